"""Which small files share a pack blob: a pure, deterministic plan.

One S3 request per 10 KB file is what bounds a push of many small files (a local MinIO
takes a few hundred PUTs a second), so files under ``pack_below`` are concatenated into
pack blobs of about ``target`` bytes, stored like any blob under the sha256 of their bytes.
Boundaries are content-defined, per file: a pack ends after a file whose own hash, read as
a number in [0, 1), is below ``size / target``. So each boundary depends only on that file,
and adding, removing or editing one file changes only the pack it lands in; the others keep
their bytes and hashes and are not uploaded again. The version digest never sees packs.
Called by ``toque.data.transfer`` during a push.
"""

from __future__ import annotations

from collections.abc import Sequence

from toque.data import manifest

_SCALE = float(16**15)


def _ends_pack(entry: manifest.FileEntry, target: int) -> bool:
    # The file's sha256 is uniformly distributed: a fair coin with P = size / target.
    return int(entry.sha256[:15], 16) / _SCALE < entry.size / target


def plan(
    entries: Sequence[manifest.FileEntry], target: int, limit: int
) -> list[tuple[manifest.FileEntry, ...]]:
    """Group distinct small files, in the given (path) order, into packs of at most ``limit``."""
    packs: list[tuple[manifest.FileEntry, ...]] = []
    current: list[manifest.FileEntry] = []
    size = 0
    for entry in entries:
        if current and size + entry.size > limit:
            packs.append(tuple(current))
            current, size = [], 0
        current.append(entry)
        size += entry.size
        if _ends_pack(entry, target):
            packs.append(tuple(current))
            current, size = [], 0
    if current:
        packs.append(tuple(current))
    return packs
