"""Settings of the dataset store, read from the environment a CLI user or a pod has.

``StoreConfig.from_env`` is called by ``toque.data.store.DataStore.from_env`` (the CLI and
the trainer runtime) and by the model server's sampler; tests build a ``StoreConfig``
directly. The timeouts and retry count are small on purpose: a store that is down should
fail a command in seconds, not minutes, and the callers (kopf handlers, Job restarts)
already retry at a coarser grain. The secret key never appears in a repr or a message.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

from toque.core import redact
from toque.data import errors

DEFAULT_BUCKET = "toque-data"
DEFAULT_REGION = "us-east-1"
RETENTION_MODES = ("GOVERNANCE", "COMPLIANCE")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """Where the store lives and how hard to try reaching it."""

    endpoint: str | None
    access_key: str | None
    # repr=False: a StoreConfig in a log line, a traceback or an assertion diff must not leak it.
    secret_key: str | None = dataclasses.field(repr=False)
    region: str = DEFAULT_REGION
    bucket: str = DEFAULT_BUCKET
    connect_timeout: float = 3.0
    read_timeout: float = 60.0
    # Total attempts per request (1 = no retry), with a short backoff between them.
    max_attempts: int = 3
    # Concurrent transfers: many small files are bound by request latency, not bandwidth.
    workers: int = 32
    # Files at least this big go up as multipart uploads with parallel parts.
    multipart_threshold: int = 64 * 1024 * 1024
    part_size: int = 32 * 1024 * 1024
    # Files smaller than this are packed together into blobs of about ``pack_target``
    # bytes (0 turns packing off): one request per small file is what limits a push.
    pack_below: int = 1024 * 1024
    pack_target: int = 8 * 1024 * 1024
    pack_limit: int = 32 * 1024 * 1024
    # A bucket the store creates itself gets versioning and S3 Object Lock; with a retention
    # period (days > 0) every object version is also locked for that long by default.
    retention_mode: str = "GOVERNANCE"
    retention_days: int = 0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.workers < 1:
            raise errors.InvalidInput("TOQUE_S3_MAX_ATTEMPTS and TOQUE_DATA_WORKERS must be >= 1")
        if not BUCKET_RE.match(self.bucket):
            raise errors.InvalidInput(
                f"invalid bucket name {self.bucket!r}: 3-63 lowercase letters, digits, '.', '-'"
            )
        if not 0 <= self.pack_below <= self.pack_limit or self.pack_target <= 0:
            raise errors.InvalidInput("TOQUE_DATA_PACK_BELOW must be between 0 and the pack limit")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise errors.InvalidInput("S3 timeouts must be positive")
        if self.retention_mode not in RETENTION_MODES or self.retention_days < 0:
            raise errors.InvalidInput(
                "TOQUE_DATA_RETENTION_MODE must be GOVERNANCE or COMPLIANCE and "
                "TOQUE_DATA_RETENTION_DAYS >= 0"
            )

    def __repr__(self) -> str:
        # Not the generated repr: the endpoint may carry user:password@ too.
        shown = []
        for field in dataclasses.fields(self):
            if field.repr:
                value = getattr(self, field.name)
                if field.name == "endpoint" and value:
                    value = redact.redact_url(value)
                shown.append(f"{field.name}={value!r}")
        return f"StoreConfig({', '.join(shown)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StoreConfig:
        env = os.environ if env is None else env
        try:
            return cls(
                endpoint=env.get("TOQUE_S3_ENDPOINT") or None,
                access_key=env.get("AWS_ACCESS_KEY_ID") or None,
                secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
                region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
                bucket=env.get("TOQUE_DATA_BUCKET") or DEFAULT_BUCKET,
                connect_timeout=float(env.get("TOQUE_S3_CONNECT_TIMEOUT", "3")),
                read_timeout=float(env.get("TOQUE_S3_READ_TIMEOUT", "60")),
                max_attempts=int(env.get("TOQUE_S3_MAX_ATTEMPTS", "3")),
                workers=int(env.get("TOQUE_DATA_WORKERS", "32")),
                pack_below=int(env.get("TOQUE_DATA_PACK_BELOW", str(1024 * 1024))),
                retention_mode=(env.get("TOQUE_DATA_RETENTION_MODE") or "GOVERNANCE").upper(),
                retention_days=int(env.get("TOQUE_DATA_RETENTION_DAYS", "0")),
            )
        except ValueError as exc:
            raise errors.InvalidInput(f"bad store setting in the environment: {exc}") from exc
