"""The one wrapper around every reconcile cycle, whatever the kind.

``run`` holds the object's lock for the whole observe → decide → act cycle and records
``toque_reconcile_total{kind,result}``, ``toque_reconcile_errors_total{kind,error}`` and
``toque_reconcile_duration_seconds{kind}`` whether the cycle succeeds or fails, and counts it in
``toque_reconcile_in_flight{kind}`` while it runs or waits for the lock.

``retrying`` is for kopf's resource handlers: on top of ``run`` it maps what a retry can fix
to ``kopf.TemporaryError`` (the API server or MLflow unreachable or overloaded), re-raises
everything else, and turns a cycle's ``LookAgain`` (not settled yet) into a temporary error
with the kind's delay, so kopf calls the handler again; until a cycle settles the object, it
counts in ``toque_reconcile_queue_depth{kind}``.

``best_effort`` is for the events of children (pods, Jobs, Deployments): frequent, and
retried by the owner's own handler, so a failure only logs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kopf

from toque.clients import kube, mlflow_registry
from toque.handlers import metrics, runtime

Logger = logging.Logger | logging.LoggerAdapter[Any]
T = TypeVar("T")

API_RETRY_SECONDS = 5.0
REGISTRY_RETRY_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Target:
    """What a cycle works on: its kind (the metrics label) and the lock it holds."""

    kind: str
    namespace: str
    key: str  # an object's name, or "model:<name>" for all versions of a model


@dataclasses.dataclass(frozen=True)
class LookAgain:
    """The cycle finished, but the object is not settled: call the handler again."""

    delay: float
    why: str


def run(target: Target, cycle: Callable[[], T]) -> T:
    """``cycle()`` under the target's lock, with the reconcile metrics recorded either way."""
    started = time.monotonic()
    result = "error"
    in_flight = metrics.IN_FLIGHT.labels(target.kind)
    in_flight.inc()
    try:
        with runtime.lock_for(target.namespace, target.key):
            value = cycle()
        result = "success"
        return value
    except Exception as error:
        metrics.ERRORS.labels(target.kind, type(error).__name__).inc()
        raise
    finally:
        in_flight.dec()
        metrics.RECONCILES.labels(target.kind, result).inc()
        metrics.DURATION.labels(target.kind).observe(time.monotonic() - started)


def temporary(error: Exception) -> kopf.TemporaryError | None:
    """The retry for an error a retry can fix, or None (the error is permanent)."""
    if isinstance(error, kopf.TemporaryError):
        return error
    if isinstance(error, mlflow_registry.RegistryUnavailableError):
        return kopf.TemporaryError(f"MLflow unreachable: {error}", delay=REGISTRY_RETRY_SECONDS)
    if kube.is_transient(error):
        if isinstance(error, kube.ApiException):
            text = f"API server: {error.status} {error.reason}"
        else:
            text = f"API server unreachable: {error}"
        return kopf.TemporaryError(text, delay=API_RETRY_SECONDS)
    return None


def retrying(target: Target, cycle: Callable[[], LookAgain | None]) -> None:
    """``run`` for a kopf resource handler: transient errors and unsettled objects come
    back as ``kopf.TemporaryError``; anything else is raised as it is."""
    try:
        again = run(target, cycle)
    except Exception as error:
        retry = temporary(error)
        _queued(target, retry.delay if retry is not None else None)
        if retry is None or retry is error:
            raise
        raise retry from error
    if again is not None:
        _queued(target, again.delay)
        raise kopf.TemporaryError(again.why, delay=again.delay)
    metrics.QUEUE.settled(target.kind, target.namespace, target.key)


def _queued(target: Target, delay: float | None) -> None:
    """The object waits for kopf's retry (``toque_reconcile_queue_depth``)."""
    until = time.monotonic() + (delay or 0.0) + metrics.QUEUE_GRACE_SECONDS
    metrics.QUEUE.waiting(target.kind, target.namespace, target.key, until)


def best_effort(target: Target, cycle: Callable[[], object], logger: Logger) -> None:
    """``run`` for a child's event: errors are logged, the next trigger retries."""
    try:
        run(target, cycle)
    except Exception as error:  # logged; the owner's handler or the next event retries
        logger.warning(
            "reconcile of %s %s/%s failed: %s", target.kind, target.namespace, target.key, error
        )
