"""Verified, parallel downloads of a dataset version into a directory.

Each file is written to a temporary name beside its target while its SHA-256 is computed
from the same stream, and renamed into place only when size and hash match the manifest;
on any failure the temporary file is removed, so a destination never holds a partial or
unverified file under a dataset path. Pack blobs are streamed once and split into their
files. A file already present with the right hash is not fetched again. On a versioned
bucket each blob is read at the object version the manifest pins, so a later overwrite of
its key changes nothing for this version. Called by ``toque.data.store.DataStore.pull``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from toque.data import errors, layout, manifest, parallel, s3


def safe_target(dest: pathlib.Path, path: str) -> pathlib.Path:
    """``dest/path``, refusing manifest paths that would escape ``dest``."""
    # Check the raw segments: PurePosixPath would quietly normalise "a//b" and "./a".
    parts = path.split("/")
    if any(p in ("..", ".", "") or "\0" in p for p in parts):
        raise errors.CorruptedObject(f"manifest lists an unsafe path {path!r}")
    return dest.joinpath(*parts)


def _intact(target: pathlib.Path, entry: manifest.FileEntry) -> bool:
    return (
        target.is_file()
        and target.stat().st_size == entry.size
        and manifest.hash_file(target)[1] == entry.sha256
    )


Slot = tuple[manifest.FileEntry, list[pathlib.Path]]


def download_all(
    bucket: s3.Bucket,
    files: Sequence[manifest.FileEntry],
    dest: pathlib.Path,
    progress: parallel.Progress,
    pins: Mapping[str, str] | None = None,
) -> int:
    """Fetch and verify every file into ``dest``; returns the bytes downloaded.

    ``pins`` (blob sha256 -> object version) makes each read ask for that version.
    """
    # blob -> (offset, size, sha256) -> (entry, targets): one content may sit at several
    # paths. The offset alone is not enough: an empty file shares its offset with the next
    # file in the pack, and sorting by (offset, size) reads it first.
    blobs: dict[str, dict[tuple[int, int, str], Slot]] = collections.defaultdict(dict)
    for entry in files:
        target = safe_target(dest, entry.path)
        key = (entry.offset, entry.size, entry.sha256)
        slot = blobs[entry.blob_sha256].setdefault(key, (entry, []))
        slot[1].append(target)
    jobs = [(blob, [slots[o] for o in sorted(slots)]) for blob, slots in blobs.items()]
    pins = pins or {}
    done = parallel.run_all(
        lambda job: _fetch_blob(bucket, job[0], job[1], progress, pins.get(job[0])),
        jobs,
        bucket.settings.workers,
    )
    return sum(done)


REPAIR_HINT = "`toque data verify` lists what is damaged; pushing the same files again repairs it"


def _fetch_blob(
    bucket: s3.Bucket,
    blob: str,
    slots: list[Slot],
    progress: parallel.Progress,
    pin: str | None,
) -> int:
    wanted = [(entry, [t for t in targets if not _intact(t, entry)]) for entry, targets in slots]
    if not any(targets for _, targets in wanted):
        progress(sum(entry.size for entry, _ in slots))
        return 0
    key = layout.blob_key(blob)
    first = slots[0][0]
    with contextlib.ExitStack() as stack:
        try:
            body = stack.enter_context(bucket.open(key, pin))
        except errors.StoreAccessDenied:
            if pin is None:
                raise
            # Reading an older version needs s3:GetObjectVersion: without it, read the
            # newest version, which the hashes below check all the same.
            body = stack.enter_context(bucket.open(key))
        if body is None:
            others = f" (and {len(slots) - 1} more files packed with it)" if len(slots) > 1 else ""
            version = f" (version {pin})" if pin else ""
            raise errors.CorruptedObject(
                f"{first.path}{others}: its blob {key}{version} is missing from "
                f"{bucket.where}; {REPAIR_HINT}"
            )
        position = 0
        for index, (entry, targets) in enumerate(wanted):
            if entry.offset != position:
                raise errors.CorruptedObject(f"manifest has a gap in pack {key}")
            _write_one(body, key, entry, targets, progress, last=index == len(wanted) - 1)
            position += entry.size
    return position


def _write_one(
    body: Any,
    key: str,
    entry: manifest.FileEntry,
    targets: list[pathlib.Path],
    progress: parallel.Progress,
    last: bool,
) -> None:
    """Copy ``entry.size`` bytes of ``body`` into each target, verified, or just skip them."""
    temps: list[pathlib.Path] = []
    outs = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".part"
            )
            temps.append(pathlib.Path(name))
            outs.append(os.fdopen(handle, "wb"))
        digest = hashlib.sha256()
        left = entry.size
        while left:
            chunk = body.read(min(left, manifest.CHUNK))
            if not chunk:
                break
            digest.update(chunk)
            for out in outs:
                out.write(chunk)
            left -= len(chunk)
            progress(len(chunk))
        for out in outs:
            out.close()
        # A blob longer than its files is as wrong as a shorter one.
        extra = body.read(1) if last else b""
        if left or extra or digest.hexdigest() != entry.sha256:
            found = "too short" if left else "too long" if extra else "other bytes"
            raise errors.CorruptedObject(
                f"{entry.path}: blob {key} is corrupted ({found}): the manifest says "
                f"{entry.size} bytes with sha256 {entry.sha256}; {REPAIR_HINT}"
            )
        for done, target in zip(temps, targets, strict=True):
            os.replace(done, target)
        temps.clear()
    finally:
        for out in outs:
            out.close()
        for leftover in temps:
            leftover.unlink(missing_ok=True)
