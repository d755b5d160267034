"""Upload of one big file as a multipart upload, parts in parallel, content re-verified.

One thread reads the file front to back and hands each part to a pool that uploads parts in
parallel, each with a CRC32 the server checks; a bounded number of parts in flight bounds
memory. The upload is completed only if the file is provably the one that was hashed: its
``Fingerprint`` (size, mtime, ctime, inode) is unchanged, or, for a file written so
recently that a coarse timestamp could hide an edit, a SHA-256 taken while reading the
parts equals the digest the manifest records. So a file edited after it was hashed is
never stored under the old digest. Called by ``toque.data.transfer.upload``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import pathlib
import threading
import time
import zlib
from typing import Any

import botocore.exceptions

from toque.data import errors, layout, parallel, s3

PARTS_IN_FLIGHT = 8


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


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
) -> bool:
    """Store ``source`` as the blob ``sha256`` unless it exists; True if this call did.

    ``before`` is the file's fingerprint taken before it was hashed.
    """
    size = before.size
    key = layout.blob_key(sha256)
    if bucket.exists(key):
        progress(size)
        return False
    with bucket.translate(f"starting the upload of {source}"):
        upload_id = bucket.client.create_multipart_upload(
            Bucket=bucket.name, Key=key, ContentType="application/octet-stream",
            ChecksumAlgorithm="CRC32",
        )["UploadId"]  # fmt: skip
    try:
        # Hashing again costs a second pass on a CPU the server needs: only when in doubt.
        digest = None if before.settled else hashlib.sha256()
        parts = _send_parts(bucket, key, upload_id, source, digest, progress)
        if not before.same(Fingerprint.of(source)):
            raise edited(source)
        if digest is not None and digest.hexdigest() != sha256:
            raise edited(source)
        return _complete(bucket, key, upload_id, parts, source)
    except BaseException:
        _abort(bucket, key, upload_id)
        raise


def _send_parts(
    bucket: s3.Bucket,
    key: str,
    upload_id: str,
    source: pathlib.Path,
    digest: hashlib._Hash | None,
    progress: parallel.Progress,
) -> list[dict[str, Any]]:
    def put_part(number: int, data: bytes) -> dict[str, Any]:
        checksum = _crc32(data)
        with bucket.translate(f"uploading part {number} of {source}"):
            response = bucket.client.upload_part(
                Bucket=bucket.name, Key=key, UploadId=upload_id, PartNumber=number,
                Body=data, ChecksumCRC32=checksum,
            )  # fmt: skip
        progress(len(data))
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": checksum}

    def settle(future: concurrent.futures.Future[dict[str, Any]]) -> None:
        if future.cancelled() or future.exception() is not None:
            failed.set()
        slots.release()

    slots = threading.Semaphore(PARTS_IN_FLIGHT)
    failed = threading.Event()
    futures: list[concurrent.futures.Future[dict[str, Any]]] = []
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
            parts = [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return parts


def _complete(
    bucket: s3.Bucket, key: str, upload_id: str, parts: list[dict[str, Any]], source: pathlib.Path
) -> bool:
    args: dict[str, Any] = {
        "Bucket": bucket.name, "Key": key, "UploadId": upload_id,
        "MultipartUpload": {"Parts": parts},
    }  # fmt: skip
    with bucket.translate(f"completing the upload of {source}"):
        created = bucket.create_once(key, bucket.client.complete_multipart_upload, args)
    if not created:
        # Someone stored the same bytes meanwhile: theirs stays, ours is dropped.
        _abort(bucket, key, upload_id)
    return created


def _abort(bucket: s3.Bucket, key: str, upload_id: str) -> None:
    # The original error matters more; a bucket lifecycle rule reaps stale uploads.
    with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=key, UploadId=upload_id)
