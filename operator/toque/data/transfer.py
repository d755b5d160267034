"""Parallel hashing and uploads of the files of a push.

Small files go up concatenated in pack blobs (``toque.data.packs``), mid-sized ones as one
PUT each, big ones as multipart uploads with parallel parts (``toque.data.multipart``).
Every blob is created only if absent and carries a checksum the server verifies, and every
body is checked against the hash the manifest records, so a file edited during a push can
never end up stored under its old digest. Called by ``toque.data.store``; ``fetch`` is the
download side.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import threading
from collections.abc import Callable, Sequence

from toque.data import errors, layout, manifest, multipart, packs, parallel, s3, schema

# Below this a HEAD costs about what the upload does: just try the conditional PUT.
HEAD_FIRST = 1024 * 1024
# Packs are built in memory: bound how many exist at once.
PACKS_IN_FLIGHT = 8
HASH_BATCH_BYTES = 8 * 1024 * 1024
HASH_BATCH_FILES = 256


@dataclasses.dataclass(frozen=True)
class Hashed:
    """A local file with its manifest entry."""

    local: manifest.LocalFile
    entry: manifest.FileEntry
    table: manifest.Table | None
    before: multipart.Fingerprint


def hash_all(
    files: Sequence[manifest.LocalFile], workers: int, progress: parallel.Progress
) -> list[Hashed]:
    def one(local: manifest.LocalFile) -> Hashed:
        before = multipart.Fingerprint.of(local.source)
        size, sha = manifest.hash_file(local.source)
        progress(size)
        table = schema.infer(local.source, local.path) if schema.is_tabular(local.path) else None
        entry = manifest.FileEntry(path=local.path, size=size, sha256=sha)
        return Hashed(local, entry, table, before)

    def batch(group: list[manifest.LocalFile]) -> list[Hashed]:
        return [one(local) for local in group]

    # Small files in batches: a 10 KB file hashes in microseconds, and one pool task per
    # file would spend more time handing the GIL between threads than hashing.
    batches: list[list[manifest.LocalFile]] = []
    size = 0
    for local in files:
        if (
            not batches
            or size + local.size > HASH_BATCH_BYTES
            or len(batches[-1]) >= HASH_BATCH_FILES
        ):
            batches.append([])
            size = 0
        batches[-1].append(local)
        size += local.size
    return [h for group in parallel.run_all(batch, batches, workers) for h in group]


@dataclasses.dataclass(frozen=True)
class Uploaded:
    """What a push sent, and where packed contents (by sha256) live: (pack, offset)."""

    files: int
    bytes: int
    placement: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)

    def place(self, entry: manifest.FileEntry) -> manifest.FileEntry:
        if entry.sha256 not in self.placement:
            return entry
        blob, offset = self.placement[entry.sha256]
        return entry.model_copy(update={"blob": blob, "offset": offset})


def upload(bucket: s3.Bucket, items: Sequence[Hashed], progress: parallel.Progress) -> Uploaded:
    """Store each distinct content once, packing the small ones."""
    settings = bucket.settings
    by_sha: dict[str, Hashed] = {}
    for item in items:
        by_sha.setdefault(item.entry.sha256, item)  # the first path with this content
    unique = list(by_sha.values())
    small = [item.entry for item in unique if item.entry.size < settings.pack_below]
    jobs: list[Callable[[], Uploaded]] = []
    gate = threading.Semaphore(PACKS_IN_FLIGHT)
    for group in packs.plan(small, settings.pack_target, settings.pack_limit):
        members = [by_sha[e.sha256] for e in group]
        if len(members) == 1:
            jobs.append(functools.partial(_put_single, bucket, members[0], progress))
        else:
            jobs.append(functools.partial(_put_pack, bucket, members, gate, progress))
    rest = [item for item in unique if item.entry.size >= settings.pack_below]
    big = [item for item in rest if item.entry.size >= settings.multipart_threshold]
    jobs += [functools.partial(_put_single, bucket, i, progress) for i in rest if i not in big]
    # Big files go one by one (their parts are the parallelism) beside the main pool.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as big_runner:
        big_future = big_runner.submit(lambda: [_put_big(bucket, i, progress) for i in big])
        try:
            results = parallel.run_all(lambda job: job(), jobs, settings.workers)
        finally:
            # Wait for the big files even when a small one failed: no upload outlives us.
            big_results = big_future.result()
    results += big_results
    placement: dict[str, tuple[str, int]] = {}
    for result in results:
        placement.update(result.placement)
    return Uploaded(sum(r.files for r in results), sum(r.bytes for r in results), placement)


def _put_big(bucket: s3.Bucket, item: Hashed, progress: parallel.Progress) -> Uploaded:
    if item.before.size != item.entry.size:
        raise multipart.edited(item.local.source)  # it changed while it was hashed
    created = multipart.put(bucket, item.local.source, item.entry.sha256, item.before, progress)
    return Uploaded(1, item.entry.size) if created else Uploaded(0, 0)


def _put_single(bucket: s3.Bucket, item: Hashed, progress: parallel.Progress) -> Uploaded:
    key = layout.blob_key(item.entry.sha256)
    if item.entry.size >= HEAD_FIRST and bucket.exists(key):
        progress(item.entry.size)
        return Uploaded(0, 0)
    data = item.local.source.read_bytes()
    try:
        # The server checks the bytes against the SHA-256 we hashed earlier.
        created = bucket.put_new(
            key, data, sha256=bytes.fromhex(item.entry.sha256),
            ContentType="application/octet-stream",
        )  # fmt: skip
    except errors.CorruptedObject as exc:
        raise multipart.edited(item.local.source) from exc
    progress(len(data))
    return Uploaded(1, len(data)) if created else Uploaded(0, 0)


def _put_pack(
    bucket: s3.Bucket,
    members: Sequence[Hashed],
    gate: threading.Semaphore,
    progress: parallel.Progress,
) -> Uploaded:
    with gate:
        bodies = []
        for item in members:
            data = item.local.source.read_bytes()
            # Checked here: the server can only verify the pack as a whole.
            if hashlib.sha256(data).hexdigest() != item.entry.sha256:
                raise multipart.edited(item.local.source)
            bodies.append(data)
        pack = b"".join(bodies)
        del bodies
        digest = hashlib.sha256(pack)
        key = layout.blob_key(digest.hexdigest())
        offsets, offset = {}, 0
        for item in members:
            offsets[item.entry.sha256] = (digest.hexdigest(), offset)
            offset += item.entry.size
        # A HEAD first: an unchanged pack (most of them, on a new version) is not resent.
        created = not bucket.exists(key) and bucket.put_new(
            key, pack, sha256=digest.digest(), ContentType="application/octet-stream"
        )
        progress(len(pack))
    return Uploaded(len(members), len(pack), offsets) if created else Uploaded(0, 0, offsets)
