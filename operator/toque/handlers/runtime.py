"""Process-wide state of the operator: the API client, the build config, per-object locks."""

from __future__ import annotations

import collections
import functools
import os
import threading

from toque.clients import kube
from toque.resources import pods


@functools.cache
def client() -> kube.Kube:
    return kube.Kube.from_environment()


@functools.cache
def build_config() -> pods.BuildConfig:
    """From the operator's environment (set by the Helm chart)."""
    defaults = pods.BuildConfig()
    return pods.BuildConfig(
        runtime_image=os.environ.get("TOQUE_RUNTIME_IMAGE") or defaults.runtime_image,
        mlflow_tracking_uri=os.environ.get("TOQUE_MLFLOW_TRACKING_URI") or None,
        s3_endpoint=os.environ.get("TOQUE_S3_ENDPOINT") or None,
        data_bucket=os.environ.get("TOQUE_DATA_BUCKET") or None,
        credentials_secret=os.environ.get("TOQUE_CREDENTIALS_SECRET") or None,
    )


_guard = threading.Lock()
# Job and pod events can trigger a reconcile of a TrainingJob while its own handler runs;
# one lock per object keeps each observe→act cycle whole.
_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)


def lock_for(namespace: str, name: str) -> threading.Lock:
    with _guard:
        return _locks[f"{namespace}/{name}"]


def forget_lock(namespace: str, name: str) -> None:
    with _guard:
        _locks.pop(f"{namespace}/{name}", None)
