"""Process-wide state of the operator: the API client, the build config, per-object locks."""

from __future__ import annotations

import collections
import functools
import os
import threading

from toque.clients import kube
from toque.resources import trainingjob_job as jobs


@functools.cache
def client() -> kube.Kube:
    return kube.Kube.from_environment()


@functools.cache
def build_config() -> jobs.BuildConfig:
    image = os.environ.get("TOQUE_RUNTIME_IMAGE")
    return jobs.BuildConfig(runtime_image=image) if image else jobs.BuildConfig()


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
