"""A thin wrapper over one S3 bucket: client settings, error translation, conditional writes.

Every S3 call of the dataset store goes through ``Bucket`` so that botocore's exceptions
become ``toque.data.errors`` classes in one place (transient vs permanent), and so that
"create only if absent" has a single implementation: a conditional ``If-None-Match: *`` PUT
where the server supports it, else a HEAD before the PUT. Called by ``toque.data.store`` and
``toque.data.transfer``.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from toque.data import config, errors

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"}
EXISTS = {"PreconditionFailed", "ConditionalRequestConflict"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
_MISMATCH = {"BadDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"}
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectionError,
    # Covers ResponseStreamingError: a body cut off while it was being read.
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
)


def error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status


def is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    code, status = error_code(exc)
    return code in _NOT_FOUND or status == 404


def make_client(settings: config.StoreConfig) -> S3Client:
    if not settings.access_key or not settings.secret_key:
        raise errors.StoreAccessDenied(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    client_config = botocore.config.Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        # One connection per worker thread, plus the parts of a multipart upload.
        max_pool_connections=settings.workers * 2,
        # Every body we send carries our own SHA-256 (small objects) or is verified on
        # pull (parts), so botocore's extra CRC and its payload-signing SHA-256 pass
        # over plain HTTP would only burn CPU twice.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path", "payload_signing_enabled": False},
    )
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint,
        aws_access_key_id=settings.access_key,
        aws_secret_access_key=settings.secret_key,
        config=client_config,
    )
    return client


class Bucket:
    """One bucket of one store; thread-safe (boto3 clients are)."""

    def __init__(self, settings: config.StoreConfig, client: S3Client | None = None) -> None:
        self.settings = settings
        self.name = settings.bucket
        self.client = client or make_client(settings)
        self._conditional = True
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"s3://{self.name} at {self.settings.endpoint or 'AWS'}"

    @contextlib.contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Turn botocore failures while ``doing`` into ``toque.data.errors`` classes."""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code, status = error_code(exc)
            if code in _DENIED or status == 403:
                raise errors.StoreAccessDenied(f"{self.where} denied {doing}: {code}") from exc
            if code in _MISMATCH:
                raise errors.CorruptedObject(
                    f"{self.where} rejected {doing}: the bytes sent do not match their SHA-256"
                    " (did the file change while it was pushed?)"
                ) from exc
            if code in _BUSY or status >= 500:
                raise errors.StoreUnavailable(
                    f"{self.where} failed {doing}: {code or status} (try again later)"
                ) from exc
            raise errors.DataError(f"{self.where} refused {doing}: {code or status}") from exc
        except _UNREACHABLE as exc:
            raise errors.StoreUnavailable(
                f"cannot reach {self.where} while {doing}: {exc}"
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise errors.StoreAccessDenied(f"no S3 credentials for {self.where}") from exc

    def ensure(self) -> None:
        """Create the bucket if it is missing (push only: readers never create it)."""
        with self.translate("checking the bucket"):
            try:
                self.client.head_bucket(Bucket=self.name)
                return
            except botocore.exceptions.ClientError as exc:
                if not is_not_found(exc):
                    raise
            try:
                self.client.create_bucket(Bucket=self.name)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc)[0] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    def exists(self, key: str) -> bool:
        with self.translate(f"checking {key}"):
            try:
                self.client.head_object(Bucket=self.name, Key=key)
            except botocore.exceptions.ClientError as exc:
                if is_not_found(exc):
                    return False
                raise
        return True

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when the key (or the bucket) does not exist."""
        with self.translate(f"reading {key}"):
            try:
                response = self.client.get_object(Bucket=self.name, Key=key)
                return response["Body"].read()
            except botocore.exceptions.ClientError as exc:
                if is_not_found(exc):
                    return None
                raise

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        """Write or replace: only for movable pointers (tags)."""
        with self.translate(f"writing {key}"):
            self.client.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)

    def put_new(self, key: str, body: bytes, sha256: bytes | None = None, **extra: Any) -> bool:
        """Create ``key`` unless it exists; True if this call created it.

        ``sha256`` (the raw digest of ``body``) makes the server verify what it received.
        """
        args: dict[str, Any] = {"Bucket": self.name, "Key": key, "Body": body, **extra}
        if sha256 is not None:
            args["ChecksumSHA256"] = base64.b64encode(sha256).decode()
        with self.translate(f"writing {key}"):
            return self.create_once(key, self.client.put_object, args)

    def create_once(self, key: str, write: Callable[..., Any], args: dict[str, Any]) -> bool:
        """``write(**args)`` creates ``key`` unless it exists; True if this call created it.

        Used for plain puts and for completing multipart uploads alike; the caller wraps it
        in ``translate``.
        """
        if self._conditional:
            try:
                write(IfNoneMatch="*", **args)
                return True
            except botocore.exceptions.ClientError as exc:
                code, status = error_code(exc)
                if code in EXISTS or status in (409, 412):
                    return False
                if code != "NotImplemented" and status != 501:
                    raise
                with self._lock:
                    self._conditional = False
        # A server without conditional writes: a racing writer can slip in between,
        # which for content-addressed keys only rewrites the same bytes.
        if self.exists(key):
            return False
        write(**args)
        return True

    @property
    def conditional(self) -> bool:
        """Whether conditional writes work (False after the server said NotImplemented)."""
        return self._conditional

    def keys(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Objects under ``prefix`` (Key, Size, LastModified), in key order."""
        with self.translate(f"listing {prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=prefix
            )
            try:
                for page in pages:
                    for item in page.get("Contents", []):
                        yield dict(item)
            except botocore.exceptions.ClientError as exc:
                if not is_not_found(exc):
                    raise

    def folders(self, prefix: str) -> list[str]:
        """Immediate sub-"folders" of ``prefix`` (without the prefix or trailing slash)."""
        found: list[str] = []
        with self.translate(f"listing {prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.name, Prefix=prefix, Delimiter="/"
            )
            try:
                for page in pages:
                    for item in page.get("CommonPrefixes", []):
                        found.append(item["Prefix"][len(prefix) :].rstrip("/"))
            except botocore.exceptions.ClientError as exc:
                if not is_not_found(exc):
                    raise
        return found
