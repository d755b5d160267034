"""Upload of one big file as a multipart upload, parts in parallel, content re-verified.

One thread reads the file front to back and hands each part to a pool that uploads parts in
parallel, each verified by the server against the digest the client sends with it; a
bounded number of parts in flight bounds memory. The upload is completed only if the file
is provably the one that was hashed: its ``Fingerprint`` (size, mtime, ctime, inode) is
unchanged, or, for a file written so recently that a coarse timestamp could hide an edit, a
SHA-256 taken while reading the parts equals the digest the manifest records. So a file
edited after it was hashed is never stored under the old digest; and the upload completes
only if the key is still absent (except for a repair). Called by ``toque.data.transfer``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import pathlib
import threading
import time

from toque.data import errors, layout, parallel, s3

PARTS_IN_FLIGHT = 8


def edited(source: pathlib.Path) -> errors.InvalidInput:
    return errors.InvalidInput(
        f"{source} changed while it was pushed; nothing was stored for it, push again"
    )


# ctime cannot be set from user space and moves on every write; a file whose ctime is older
# than this when it is hashed cannot change again within the same timestamp tick.
SETTLED_NS = 2_000_000_000


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    settled: bool

    @classmethod
    def of(cls, source: pathlib.Path) -> Fingerprint:
        info = source.stat()
        settled = time.time_ns() - info.st_ctime_ns > SETTLED_NS
        return cls(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, settled)

    def same(self, other: Fingerprint) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == (
            other.size, other.mtime_ns, other.ctime_ns, other.inode,
        )  # fmt: skip


def put(
    bucket: s3.Bucket,
    source: pathlib.Path,
    sha256: str,
    before: Fingerprint,
    progress: parallel.Progress,
    *,
    only_if_absent: bool = True,
) -> s3.Created | None:
    """Store ``source`` as the blob ``sha256``: its version, or None if it already existed.

    ``before`` is the file's fingerprint taken before it was hashed. ``only_if_absent=False``
    is for a repair: the key exists and was proven damaged.
    """
    key = layout.blob_key(sha256)
    upload = s3.Multipart(bucket, key, str(source))
    try:
        # Hashing again costs a second pass on a CPU the server needs: only when in doubt.
        digest = None if before.settled else hashlib.sha256()
        etags = _send_parts(bucket, upload, source, digest, progress)
        if not before.same(Fingerprint.of(source)):
            raise edited(source)
        if digest is not None and digest.hexdigest() != sha256:
            raise edited(source)
        created = upload.complete(etags, only_if_absent)
    except BaseException:
        upload.abort()
        raise
    if created is None:
        # Someone stored the same bytes meanwhile: theirs stays, ours is dropped.
        upload.abort()
    return created


def _send_parts(
    bucket: s3.Bucket,
    upload: s3.Multipart,
    source: pathlib.Path,
    digest: hashlib._Hash | None,
    progress: parallel.Progress,
) -> list[str]:
    def put_part(number: int, data: bytes) -> str:
        # The client signs each part's SHA-256 (HTTP) or sends its MD5 (HTTPS): the server
        # rejects a part that arrives other than it was read.
        etag = upload.part(number, data)
        progress(len(data))
        return etag

    def settle(future: concurrent.futures.Future[str]) -> None:
        if future.cancelled() or future.exception() is not None:
            failed.set()
        slots.release()

    slots = threading.Semaphore(PARTS_IN_FLIGHT)
    failed = threading.Event()
    futures: list[concurrent.futures.Future[str]] = []
    workers = min(PARTS_IN_FLIGHT, bucket.settings.workers)
    with (
        concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool,
        source.open("rb") as handle,
    ):
        try:
            while not failed.is_set() and (data := handle.read(bucket.settings.part_size)):
                if digest is not None:
                    digest.update(data)
                slots.acquire()
                future = pool.submit(put_part, len(futures) + 1, data)
                future.add_done_callback(settle)
                futures.append(future)
            # A failed part raises here; reading stopped at the first failure.
            etags = [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return etags
