"""Is a stored blob intact? The checks behind ``toque data verify`` and a repairing push.

A blob is intact when the bytes a reader gets hash to the sha256 its key names. Two ways to
know: re-hash what is stored (``rehash``: always right, costs a download), or the SHA-256
checksum the server computed and kept when the object was written (``probe``: a HEAD;
single PUTs and packs carry one, multipart uploads do not). On a versioned bucket a
manifest pins the object version each blob had when it was stored: that version is what
reads get, and the key's newest version may differ from it (an overwrite by someone else),
which ``audit`` reports as well. Called by ``toque.data.transfer`` (push) and
``toque.data.store.DataStore.verify``.
"""

from __future__ import annotations

import dataclasses
import hashlib

from toque.data import layout, manifest, parallel, s3


def rehash(
    bucket: s3.Bucket, sha: str, size: int, version: str | None = None,
    progress: parallel.Progress | None = None,
) -> str | None:  # fmt: skip
    """None when the blob (version) holds exactly its bytes; else what is wrong, in words."""
    key = layout.blob_key(sha)
    with bucket.open(key, version) as body:
        if body is None:
            return "missing"
        digest = hashlib.sha256()
        count = 0
        with bucket.translate(f"reading {key}"):
            while chunk := body.read(manifest.CHUNK):
                digest.update(chunk)
                count += len(chunk)
                if progress is not None:
                    progress(len(chunk))
    if count != size:
        return f"{count} bytes instead of {size}"
    if digest.hexdigest() != sha:
        return "other bytes (sha256 differs)"
    return None


def probe(
    bucket: s3.Bucket, sha: str, size: int, head: s3.Head | None, version: str | None = None
) -> str | None:
    """Like ``rehash``, but a stored SHA-256 checksum answers without reading the bytes."""
    if head is None:
        return "missing"
    if head.size != size:
        return f"{head.size} bytes instead of {size}"
    if head.sha256 is not None:
        return None if head.sha256 == sha else "other bytes (stored checksum differs)"
    return rehash(bucket, sha, size, version)


@dataclasses.dataclass(frozen=True)
class BlobState:
    """What reads of one blob get (``read``) and what its key holds now (``current``)."""

    sha: str
    size: int
    pin: str | None
    read: str | None  # problem of what readers get; None when intact
    current: str | None  # problem of the key's newest version, when it is not the pinned one
    current_version: str | None
    intact_version: str | None = None  # an older version with the right bytes, if any


def check(bucket: s3.Bucket, sha: str, size: int, pin: str | None, *, thorough: bool) -> BlobState:
    """The state of one blob as a version with ``pin`` reads it.

    ``thorough`` re-hashes every byte (verify); otherwise a stored checksum, or a pinned
    version that is the current one, is proof enough (push).
    """
    key = layout.blob_key(sha)
    head = bucket.head(key)
    current_version = head.version if head else None
    read: str | None
    if pin and head is not None and current_version == pin:
        if thorough:
            read = rehash(bucket, sha, size, pin)
        else:
            # An object version never changes, and this one was verified when written.
            read = probe(bucket, sha, size, head, pin) if head.sha256 else None
        return BlobState(sha, size, pin, read, None, current_version)
    if not pin:
        read = rehash(bucket, sha, size) if thorough else probe(bucket, sha, size, head)
        return BlobState(sha, size, pin, read, None, current_version)
    pinned = bucket.head(key, pin)
    if pinned is None:
        read = "missing (its pinned version is gone)"
    elif thorough:
        read = rehash(bucket, sha, size, pin)
    elif pinned.sha256 is not None:
        read = probe(bucket, sha, size, pinned, pin)
    else:
        read = None
    if head is None:
        current: str | None = "missing (deleted)"
    else:
        current = rehash(bucket, sha, size) if thorough else probe(bucket, sha, size, head)
    return BlobState(sha, size, pin, read, current, current_version)


def find_intact(bucket: s3.Bucket, sha: str, size: int) -> str | None:
    """An older version of the blob that still holds its bytes (versioned buckets)."""
    for listed in bucket.versions(layout.blob_key(sha)):
        if listed.deleted or listed.latest or listed.version is None:
            continue
        if rehash(bucket, sha, size, listed.version) is None:
            return listed.version
    return None
