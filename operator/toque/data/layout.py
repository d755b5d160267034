"""Where things live in the bucket: the one place that names S3 keys.

    blobs/sha256/<hex>                                   file bodies and packs, immutable
    datasets/<name>/versions/<hex>.json                  manifests, immutable
    datasets/<name>/tags/<tag>.json                      movable pointers
    datasets/<name>/tag-history/<tag>/<time>-<hex12>.json  every pointer move, append-only

Only tags are ever overwritten (``is_movable``); the rest is created once, and a blob or a
version is written again only by a repair, with the bytes its key names.

Used by ``toque.data.store``, ``s3``, ``transfer``, ``multipart``, ``fetch`` and ``verify``.
"""

from __future__ import annotations

from toque.data import manifest

BLOBS = "blobs/sha256/"
DATASETS = "datasets/"


def blob_key(sha256: str) -> str:
    return BLOBS + sha256


def _hex(digest: str) -> str:
    return digest.removeprefix(manifest.DIGEST_PREFIX)


def versions_prefix(name: str) -> str:
    return f"{DATASETS}{name}/versions/"


def version_key(name: str, digest: str) -> str:
    return f"{versions_prefix(name)}{_hex(digest)}.json"


def tags_prefix(name: str) -> str:
    return f"{DATASETS}{name}/tags/"


def tag_key(name: str, tag: str) -> str:
    return f"{tags_prefix(name)}{tag}.json"


def history_prefix(name: str, tag: str) -> str:
    return f"{DATASETS}{name}/tag-history/{tag}/"


def history_key(name: str, tag: str, stamp: str, digest: str) -> str:
    return f"{history_prefix(name, tag)}{stamp}-{_hex(digest)[:12]}.json"


def is_movable(key: str) -> bool:
    """Only tags move; every other key is written once (or repaired with the same bytes)."""
    parts = key.split("/")
    return len(parts) == 4 and parts[0] + "/" == DATASETS and parts[2] == "tags"


def sha_of_blob(key: str) -> str:
    return key.removeprefix(BLOBS)
