"""Parallel hashing and uploads of the files of a push.

Small files go up concatenated in pack blobs (``toque.data.packs``), mid-sized ones as one
PUT each, big ones as multipart uploads with parallel parts (``toque.data.multipart``).
Every blob is created only if absent and carries a checksum the server verifies, and every
body is checked against the hash the manifest records, so a file edited during a push can
never end up stored under its old digest. A key that exists is not trusted: it is kept only
if it proves intact (``toque.data.verify``), else it is written again from the local bytes
(a repair), and ``repair`` does the same for the blobs of a version that already exists.
Called by ``toque.data.store``; ``fetch`` is the download side.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import threading
from collections.abc import Callable, Sequence

from toque.data import errors, layout, manifest, multipart, packs, parallel, s3, schema, verify

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
    """What a push sent, and where packed contents (by sha256) live: (pack, offset).

    ``versions`` maps each blob (sha256) to the object version a reader should pin, on a
    versioned bucket; ``repaired`` lists the blobs that were stored damaged and were written
    again from the local bytes, each with what was wrong.
    """

    files: int
    bytes: int
    placement: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    repaired: tuple[tuple[str, str], ...] = ()

    def place(self, entry: manifest.FileEntry) -> manifest.FileEntry:
        if entry.sha256 not in self.placement:
            return entry
        blob, offset = self.placement[entry.sha256]
        return entry.model_copy(update={"blob": blob, "offset": offset})


def _merge(results: Sequence[Uploaded]) -> Uploaded:
    placement: dict[str, tuple[str, int]] = {}
    versions: dict[str, str] = {}
    for result in results:
        placement.update(result.placement)
        versions.update(result.versions)
    return Uploaded(
        sum(r.files for r in results), sum(r.bytes for r in results), placement, versions,
        tuple(fixed for r in results for fixed in r.repaired),
    )  # fmt: skip


def _pin(sha: str, version: str | None) -> dict[str, str]:
    return {sha: version} if version and version != "null" else {}


def upload(bucket: s3.Bucket, items: Sequence[Hashed], progress: parallel.Progress) -> Uploaded:
    """Store each distinct content once, packing the small ones; repair damaged blobs."""
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
    return _merge(results + big_results)


def _existing(
    bucket: s3.Bucket, sha: str, size: int, head: s3.Head | None, rewrite: Callable[[], s3.Created]
) -> Uploaded:
    """The key exists: keep it if it is intact, else write the bytes again (a repair)."""
    problem = verify.probe(bucket, sha, size, head, head.version if head else None)
    if problem is None:
        return Uploaded(0, 0, versions=_pin(sha, head.version if head else None))
    written = rewrite()
    return Uploaded(1, size, versions=_pin(sha, written.version), repaired=((sha, problem),))


def _put_big(bucket: s3.Bucket, item: Hashed, progress: parallel.Progress) -> Uploaded:
    if item.before.size != item.entry.size:
        raise multipart.edited(item.local.source)  # it changed while it was hashed
    sha, size, source = item.entry.sha256, item.entry.size, item.local.source
    key = layout.blob_key(sha)

    def rewrite() -> s3.Created:
        written = multipart.put(bucket, source, sha, item.before, progress, only_if_absent=False)
        assert written is not None
        return written

    head = bucket.head(key)
    if head is None:
        created = multipart.put(bucket, source, sha, item.before, progress)
        if created is not None:
            return Uploaded(1, size, versions=_pin(sha, created.version))
        head = bucket.head(key)  # someone stored it meanwhile
    else:
        progress(size)
    return _existing(bucket, sha, size, head, rewrite)


def _put_bytes(
    bucket: s3.Bucket, sha: str, size: int, body: Callable[[], bytes], head_first: bool
) -> Uploaded:
    """Create the blob ``sha`` from ``body()`` unless an intact one is stored already."""
    key = layout.blob_key(sha)
    head = bucket.head(key) if head_first else None
    if head is None:
        created = bucket.put_new(key, body(), sha, "application/octet-stream")
        if created is not None:
            return Uploaded(1, size, versions=_pin(sha, created.version))
        head = bucket.head(key)
    return _existing(bucket, sha, size, head, lambda: bucket.replace(key, body(), sha))


def _put_single(bucket: s3.Bucket, item: Hashed, progress: parallel.Progress) -> Uploaded:
    source = item.local.source
    try:
        # The server checks the bytes against the SHA-256 we hashed earlier. Below
        # HEAD_FIRST a HEAD costs about what the upload does: just try the conditional PUT.
        result = _put_bytes(
            bucket, item.entry.sha256, item.entry.size, source.read_bytes,
            item.entry.size >= HEAD_FIRST,
        )  # fmt: skip
    except errors.CorruptedObject as exc:
        raise multipart.edited(source) from exc
    progress(item.entry.size)
    return result


def _read_pack(members: Sequence[Hashed]) -> bytes:
    bodies = []
    for item in members:
        data = item.local.source.read_bytes()
        # Checked here: the server can only verify the pack as a whole.
        if hashlib.sha256(data).hexdigest() != item.entry.sha256:
            raise multipart.edited(item.local.source)
        bodies.append(data)
    return b"".join(bodies)


def _put_pack(
    bucket: s3.Bucket,
    members: Sequence[Hashed],
    gate: threading.Semaphore,
    progress: parallel.Progress,
) -> Uploaded:
    with gate:
        pack = _read_pack(members)
        sha = hashlib.sha256(pack).hexdigest()
        offsets, offset = {}, 0
        for item in members:
            offsets[item.entry.sha256] = (sha, offset)
            offset += item.entry.size
        # A HEAD first: an unchanged pack (most of them, on a new version) is not resent.
        result = _put_bytes(bucket, sha, len(pack), lambda: pack, head_first=True)
        progress(len(pack))
    files = len(members) if result.files else 0
    return dataclasses.replace(result, files=files, placement=offsets)


def repair(
    bucket: s3.Bucket,
    stored: manifest.Manifest,
    items: Sequence[Hashed],
    progress: parallel.Progress,
) -> Uploaded:
    """Check every blob an existing version reads; write the damaged ones again.

    ``items`` are the local files of the same content. A blob whose pinned version is
    damaged or gone gets a new pin in ``versions`` (the caller rewrites the manifest); one
    whose pinned version is intact but whose key was overwritten gets its bytes back as the
    newest version, so that later pushes and unpinned readers find them.
    """
    by_sha = {item.entry.sha256: item for item in items}
    members: dict[str, list[manifest.FileEntry]] = {}
    for entry in stored.files:
        group = members.setdefault(entry.blob_sha256, [])
        if all(e.offset != entry.offset for e in group):
            group.append(entry)

    def one(blob: tuple[str, int]) -> Uploaded:
        sha, size = blob
        state = verify.check(bucket, sha, size, stored.blob_versions.get(sha), thorough=False)
        progress(size)
        if state.read is None and state.current is None:
            return Uploaded(0, 0)
        group = sorted(members[sha], key=lambda e: e.offset)
        sources = [by_sha[e.sha256] for e in group]
        if (
            len(group) == 1
            and group[0].blob is None
            and size >= bucket.settings.multipart_threshold
        ):
            item = sources[0]
            written = multipart.put(
                bucket, item.local.source, sha, item.before, parallel.silent(), only_if_absent=False
            )
            assert written is not None
        else:
            body = _read_pack(sources)
            if hashlib.sha256(body).hexdigest() != sha:
                raise errors.InvalidInput(f"the local files do not rebuild blob {sha}")
            try:
                written = bucket.replace(layout.blob_key(sha), body, sha)
            except errors.CorruptedObject as exc:
                raise multipart.edited(sources[0].local.source) from exc
        problem = state.read or state.current or ""
        pins = _pin(sha, written.version) if state.read is not None else {}
        return Uploaded(len(group), size, versions=pins, repaired=((sha, problem),))

    blobs = sorted(stored.blobs().items())
    return _merge(parallel.run_all(one, blobs, bucket.settings.workers))
