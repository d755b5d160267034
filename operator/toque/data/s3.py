"""One bucket of the dataset store over the ``minio`` client: the only module that talks S3.

``make_client`` is the one place an S3 client is built (the data store and the model
server's sampler both use it). ``Bucket`` turns the client's exceptions into
``toque.data.errors`` classes (transient vs permanent, endpoint credentials redacted), and
gives the store what it needs and the minio client's public API cannot say on its own:

* "create only if absent": ``put_object`` turns every header that is not ``x-amz-*`` or one
  of five content headers into ``X-Amz-Meta-*`` user metadata, so ``If-None-Match: *``
  cannot be sent through it; ``put_new`` uses the client's lower-level ``_put_object``
  (the same signed PUT, headers as given) for that one request;
* a multipart upload that completes only if absent and only after the caller re-checked its
  source: ``put_object`` completes its own multipart uploads with no hook and no headers,
  so ``Multipart`` drives ``_create_multipart_upload``, ``_upload_part`` and a conditional
  CompleteMultipartUpload through ``_execute``.

Everything else (reads of one object version, listings of versions, stat with the stored
SHA-256 checksum, bucket creation with Object Lock, versioning and lock configuration) is
the public API. Every body is verified by the server: over HTTP the client signs its
SHA-256, over HTTPS it sends its MD5. Called by ``store``, ``transfer``, ``multipart``,
``fetch`` and ``verify``.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import io
import os
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any
from xml.etree import ElementTree

import certifi
import minio
import minio.error
import minio.objectlockconfig
import urllib3
import urllib3.exceptions

from toque.core import redact
from toque.data import config, errors, layout

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload", "NoSuchVersion"}
EXISTS = {"PreconditionFailed", "ConditionalRequestConflict"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_BUSY = {
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
    "XMinioServerNotInitialized",
}  # fmt: skip
_MISMATCH = {
    "BadDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch",
    "InvalidDigest", "XAmzChecksumMismatch",
}  # fmt: skip
_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)
_NO_LOCK = {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"}
CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}
# The header mapping the minio client's request methods take.
Headers = dict[str, str | list[str] | tuple[str]]


def _endpoint(settings: config.StoreConfig) -> tuple[str, bool]:
    """(host[:port], secure) for the minio client, which takes no scheme and no path."""
    if not settings.endpoint:
        return "s3.amazonaws.com", True
    url = urllib.parse.urlsplit(settings.endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.path.strip("/"):
        raise errors.InvalidInput(
            f"TOQUE_S3_ENDPOINT {redact.redact_url(settings.endpoint)!r} must be "
            "http(s)://host[:port], without a path"
        )
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return (f"{host}:{url.port}" if url.port else host), url.scheme == "https"


def make_client(settings: config.StoreConfig) -> minio.Minio:
    """The S3 client of the store (and of anything else that writes to the store's server)."""
    if not settings.access_key or not settings.secret_key:
        raise errors.StoreAccessDenied(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    host, secure = _endpoint(settings)
    retries = settings.max_attempts - 1
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
        # One connection per worker thread, plus the parts of a multipart upload.
        maxsize=settings.workers * 2,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=[500, 502, 503, 504],
        ),
    )
    return minio.Minio(
        host,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=secure,
        # Given, so the client never asks the server for a bucket's location first.
        region=settings.region,
        http_client=http,
    )


def b64(digest_hex: str) -> str:
    """A hex SHA-256 as S3's ``x-amz-checksum-sha256`` value."""
    return base64.b64encode(bytes.fromhex(digest_hex)).decode()


@dataclasses.dataclass(frozen=True)
class Head:
    """What a HEAD says about one object (version)."""

    size: int
    version: str | None
    # The full-object SHA-256 the server computed when the object was written, hex; None
    # when it was written without one (or as a multipart upload, whose checksum is composite).
    sha256: str | None


@dataclasses.dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: datetime.datetime
    version: str | None = None
    latest: bool = True
    deleted: bool = False


@dataclasses.dataclass(frozen=True)
class Protection:
    """How far the server itself keeps stored objects from being replaced or deleted."""

    versioning: str  # "Enabled", "Suspended", "Off" or "unknown"
    object_lock: bool
    retention: str | None  # e.g. "GOVERNANCE 30 DAYS": the bucket's default retention

    @property
    def versioned(self) -> bool:
        return self.versioning == "Enabled"

    @property
    def protected(self) -> bool:
        return self.versioned and self.object_lock

    def describe(self) -> str:
        if self.protected:
            lock = (
                f"default retention {self.retention}"
                if self.retention
                else (
                    "no default retention, so a credentialed client can still delete old versions"
                )
            )
            return f"protected (versioning and Object Lock on; {lock})"
        if self.versioned:
            return (
                "versioned but not locked (overwrites keep the old version, but a credentialed"
                " client can delete versions; create the bucket with Object Lock)"
            )
        if self.versioning == "unknown":
            return "protection unknown (not allowed to read the bucket's versioning)"
        return (
            "NOT protected (no versioning, no Object Lock): a credentialed client can overwrite"
            " stored data; see the README's bucket setup"
        )


@dataclasses.dataclass(frozen=True)
class Created:
    """A write that created (or replaced) an object; ``version`` is its VersionId."""

    version: str | None


class Bucket:
    """One bucket of one store; thread-safe (the minio client is)."""

    def __init__(self, settings: config.StoreConfig, client: minio.Minio | None = None) -> None:
        self.settings = settings
        self.name = settings.bucket
        self.client = client or make_client(settings)
        self._conditional = True
        self._lock = threading.Lock()
        self._protection: Protection | None = None

    @property
    def where(self) -> str:
        endpoint = redact.redact_url(self.settings.endpoint) if self.settings.endpoint else "AWS"
        return f"s3://{self.name} at {endpoint}"

    def _clean(self, text: str) -> str:
        return redact.redact(text, self.settings.secret_key)

    @contextlib.contextmanager
    def translate(self, doing: str) -> Iterator[None]:
        """Turn the client's failures while ``doing`` into ``toque.data.errors`` classes."""
        try:
            yield
        except minio.error.S3Error as exc:
            code, status = exc.code or "", exc.response.status
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
        except minio.error.ServerError as exc:
            raise errors.StoreUnavailable(
                f"{self.where} failed {doing}: HTTP {exc.status_code} (try again later)"
            ) from exc
        except minio.error.InvalidResponseError as exc:
            raise errors.StoreUnavailable(
                self._clean(f"{self.where} answered {doing} with something that is not S3: {exc}")
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            # Connection refused, timeouts, a body cut off while it was read, retries used up.
            reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
            if isinstance(reason, urllib3.exceptions.SSLError):
                raise errors.DataError(
                    self._clean(
                        f"TLS with {self.where} failed while {doing}: {reason} (SSL_CERT_FILE "
                        "names the CA bundle to trust)"
                    )
                ) from exc
            raise errors.StoreUnavailable(
                self._clean(f"cannot reach {self.where} while {doing}: {reason}")
            ) from exc

    # -- the bucket ------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the bucket if it is missing (push only: readers never create it).

        A bucket created here gets S3 Object Lock (which turns versioning on), and the
        default retention of the settings when they give one; a server that refuses Object
        Lock gets a plain bucket, and ``protection()`` says so.
        """
        with self.translate("checking the bucket"):
            if self.client.bucket_exists(self.name):
                return
            try:
                self.client.make_bucket(self.name, object_lock=True)
            except minio.error.S3Error as exc:
                if exc.code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    return
                if exc.code not in {"NotImplemented", "InvalidRequest", "InvalidArgument"}:
                    raise
                self.client.make_bucket(self.name)
                return
            if self.settings.retention_days:
                self.client.set_object_lock_config(
                    self.name,
                    minio.objectlockconfig.ObjectLockConfig(
                        self.settings.retention_mode,
                        self.settings.retention_days,
                        minio.objectlockconfig.DAYS,
                    ),
                )
        self._protection = None

    def protection(self) -> Protection:
        """Versioning and Object Lock of the bucket (asked once per ``Bucket``)."""
        if self._protection is not None:
            return self._protection
        with self.translate("reading the bucket's versioning"):
            try:
                versioning = self.client.get_bucket_versioning(self.name).status_string
            except minio.error.S3Error as exc:
                if exc.code not in _DENIED and exc.response.status != 403:
                    raise
                versioning = "unknown"
            lock, retention = False, None
            try:
                found = self.client.get_object_lock_config(self.name)
                lock = True
                if found.mode and found.duration:
                    retention = f"{found.mode} {found.duration} {found.duration_unit}".upper()
            except minio.error.S3Error as exc:
                if exc.code not in _NO_LOCK and exc.code not in _DENIED:
                    raise
        self._protection = Protection(versioning, lock, retention)
        return self._protection

    # -- objects ---------------------------------------------------------------------------

    def head(self, key: str, version: str | None = None) -> Head | None:
        """Size, version and stored SHA-256 of ``key`` (or of its ``version``); None if absent."""
        with self.translate(f"checking {key}"):
            try:
                found = self.client.stat_object(
                    self.name, key, version_id=version, extra_headers=dict(CHECKSUM_MODE)
                )
            except minio.error.S3Error as exc:
                if exc.code in _NOT_FOUND or exc.response.status == 404:
                    return None
                # A HEAD of a delete marker, or a malformed version id.
                if exc.code in {"MethodNotAllowed", "InvalidArgument"}:
                    return None
                raise
        headers: Mapping[str, str] = found.metadata or {}
        checksum = headers.get("x-amz-checksum-sha256")
        sha = None
        if checksum and "-" not in checksum:
            with contextlib.suppress(ValueError):
                sha = base64.b64decode(checksum).hex()
        return Head(found.size or 0, found.version_id, sha)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @contextlib.contextmanager
    def open(self, key: str, version: str | None = None) -> Iterator[Any | None]:
        """A streamed body of ``key`` (``.read(n)``), or None when it does not exist."""
        doing = f"reading {key}"
        with self.translate(doing):
            try:
                response = self.client.get_object(self.name, key, version_id=version)
            except minio.error.S3Error as exc:
                if exc.code in _NOT_FOUND or exc.response.status == 404:
                    response = None
                elif exc.code in {"MethodNotAllowed", "InvalidArgument"} and version:
                    response = None  # a delete marker or an unknown version id
                else:
                    raise
            try:
                yield response
            finally:
                if response is not None:
                    response.close()
                    response.release_conn()

    def get(self, key: str, version: str | None = None) -> bytes | None:
        """The object's bytes, or None when the key (or the bucket) does not exist."""
        with self.open(key, version) as body:
            if body is None:
                return None
            with self.translate(f"reading {key}"):
                data: bytes = body.read()
                return data

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        """Write or replace a movable pointer (a tag); anything else is immutable."""
        if not layout.is_movable(key):
            raise errors.InvalidInput(
                f"refusing to overwrite {key}: blobs, versions and tag history are immutable"
            )
        with self.translate(f"writing {key}"):
            self.client.put_object(self.name, key, io.BytesIO(body), len(body), content_type)

    def put_new(
        self,
        key: str,
        body: bytes,
        sha256: str | None = None,
        content_type: str = "application/json",
    ) -> Created | None:
        """Create ``key`` unless it exists: its version if this call created it, else None.

        ``sha256`` (hex) defaults to the body's; the server verifies it and keeps it, so a
        later HEAD can prove the object intact without reading it.
        """
        headers = self._headers(content_type, sha256 or hashlib.sha256(body).hexdigest())
        with self.translate(f"writing {key}"):
            if self._conditional:
                try:
                    written = self.client._put_object(
                        self.name, key, body, {**headers, "If-None-Match": "*"}
                    )
                    return Created(written.version_id)
                except minio.error.S3Error as exc:
                    if exc.code in EXISTS or exc.response.status in (409, 412):
                        return None
                    if exc.code != "NotImplemented" and exc.response.status != 501:
                        raise
                    with self._lock:
                        self._conditional = False
            # A server without conditional writes: a racing writer can slip in between,
            # which for content-addressed keys only rewrites the same bytes.
            if self.exists(key):
                return None
            written = self.client._put_object(self.name, key, body, headers)
            return Created(written.version_id)

    def replace(
        self,
        key: str,
        body: bytes,
        sha256: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> Created:
        """Write ``key`` even though it exists: only to repair an object proven damaged.

        On a versioned bucket this adds a version and the damaged one stays; on an
        unversioned one the damaged bytes are replaced.
        """
        headers = self._headers(content_type, sha256 or hashlib.sha256(body).hexdigest())
        with self.translate(f"repairing {key}"):
            written = self.client._put_object(self.name, key, body, headers)
        return Created(written.version_id)

    def _headers(self, content_type: str, sha256: str) -> Headers:
        # The SHA-256 checksum also satisfies servers that want a digest on every write to
        # a bucket with Object Lock.
        return {"Content-Type": content_type, "x-amz-checksum-sha256": b64(sha256)}

    @property
    def conditional(self) -> bool:
        """Whether conditional writes work (False after the server said NotImplemented)."""
        return self._conditional

    # -- listings --------------------------------------------------------------------------

    def keys(self, prefix: str) -> Iterator[Listed]:
        """Objects under ``prefix``, in key order."""
        with self.translate(f"listing {prefix}"):
            try:
                for item in self.client.list_objects(self.name, prefix=prefix, recursive=True):
                    if item.object_name and not item.is_dir:
                        yield Listed(
                            item.object_name, item.size or 0,
                            item.last_modified or _EPOCH,
                        )  # fmt: skip
            except minio.error.S3Error as exc:
                if exc.code not in _NOT_FOUND:
                    raise

    def versions(self, key: str) -> list[Listed]:
        """Every version of exactly ``key`` (delete markers too), newest first."""
        found = []
        with self.translate(f"listing the versions of {key}"):
            try:
                items = self.client.list_objects(
                    self.name, prefix=key, recursive=True, include_version=True
                )
                for item in items:
                    if item.object_name != key:
                        continue
                    found.append(
                        Listed(
                            key,
                            item.size or 0,
                            item.last_modified or _EPOCH,
                            item.version_id,
                            str(item.is_latest).lower() == "true",
                            item.is_delete_marker,
                        )
                    )
            except minio.error.S3Error as exc:
                if exc.code not in _NOT_FOUND:
                    raise
        return sorted(found, key=lambda v: (v.latest, v.modified), reverse=True)

    def folders(self, prefix: str) -> list[str]:
        """Immediate sub-"folders" of ``prefix`` (without the prefix or trailing slash)."""
        found: list[str] = []
        with self.translate(f"listing {prefix}"):
            try:
                for item in self.client.list_objects(self.name, prefix=prefix):
                    if item.is_dir and item.object_name:
                        found.append(item.object_name[len(prefix) :].rstrip("/"))
            except minio.error.S3Error as exc:
                if exc.code not in _NOT_FOUND:
                    raise
        return found


class Multipart:
    """One multipart upload of ``key``; parts may be sent from several threads."""

    def __init__(self, bucket: Bucket, key: str, source: str) -> None:
        self.bucket, self.key, self.source = bucket, key, source
        with bucket.translate(f"starting the upload of {source}"):
            self.upload_id = bucket.client._create_multipart_upload(
                bucket.name, key, {"Content-Type": "application/octet-stream"}
            )

    def part(self, number: int, data: bytes) -> str:
        """Send part ``number`` (from 1); its ETag."""
        with self.bucket.translate(f"uploading part {number} of {self.source}"):
            return self.bucket.client._upload_part(
                self.bucket.name, self.key, data, None, self.upload_id, number
            )

    def complete(self, etags: list[str], only_if_absent: bool = True) -> Created | None:
        """Complete with the parts in order; None if ``only_if_absent`` and the key exists."""
        root = ElementTree.Element("CompleteMultipartUpload")
        for number, etag in enumerate(etags, 1):
            part = ElementTree.SubElement(root, "Part")
            ElementTree.SubElement(part, "PartNumber").text = str(number)
            ElementTree.SubElement(part, "ETag").text = f'"{etag}"'
        body = ElementTree.tostring(root)
        headers: Headers = {
            "Content-Type": "application/xml",
            "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        }
        conditional = only_if_absent and self.bucket.conditional
        if conditional:
            headers["If-None-Match"] = "*"
        elif only_if_absent and self.bucket.exists(self.key):
            return None  # a server without conditional writes (see Bucket.put_new)
        with self.bucket.translate(f"completing the upload of {self.source}"):
            try:
                # The public complete takes no headers: no If-None-Match through it.
                response = self.bucket.client._execute(
                    "POST", self.bucket.name, self.key, body=body, headers=headers,
                    query_params={"uploadId": self.upload_id},
                )  # fmt: skip
            except minio.error.S3Error as exc:
                if conditional and (exc.code in EXISTS or exc.response.status in (409, 412)):
                    return None
                if conditional and (exc.code == "NotImplemented" or exc.response.status == 501):
                    with self.bucket._lock:
                        self.bucket._conditional = False
                    return self.complete(etags, only_if_absent)
                raise
        # S3 may answer 200 with an error document once the upload was accepted.
        if b"<Error>" in response.data[:200]:
            raise errors.StoreUnavailable(
                f"{self.bucket.where} failed completing the upload of {self.source}"
            )
        return Created(response.headers.get("x-amz-version-id"))

    def abort(self) -> None:
        # The original error matters more; a bucket lifecycle rule reaps stale uploads.
        with contextlib.suppress(minio.error.MinioException, urllib3.exceptions.HTTPError):
            self.bucket.client._abort_multipart_upload(self.bucket.name, self.key, self.upload_id)
