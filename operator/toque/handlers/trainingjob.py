"""kopf handlers for TrainingJob and the Jobs and pods it owns.

Every trigger (the TrainingJob changed, its Job changed, one of its pods changed) runs the
same level-triggered cycle: observe everything, ask ``reconcile.trainingjob.plan``, apply
what it says, write status once, post its Events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Any

import kopf

from toque.api import constants
from toque.clients import kube, mlflow_registry
from toque.handlers import metrics, runtime
from toque.reconcile import trainingjob as decide
from toque.resources import names
from toque.resources import trainingjob_job as jobs

KIND = "TrainingJob"
Logger = logging.Logger | logging.LoggerAdapter[Any]
MUTABLE_FIELD_MANAGER = f"{constants.FIELD_MANAGER}-mutable"
# An unsettled run is re-checked every 5 s for its first minute, then every 15 s.
FAST_CHECKS = 12


def reconcile(namespace: str, name: str, logger: Logger) -> bool:
    """One observe → decide → act cycle; raises on errors so the caller can retry.

    Returns True while the run is not settled (not finished, or its gate still waits for the
    registry): some changes raise no watch event here (the Job controller reports pod
    creation failures only as Events; the registry is outside the cluster), so the caller
    looks again.
    """
    started = time.monotonic()
    try:
        with runtime.lock_for(namespace, name):
            waiting = _cycle(namespace, name, logger)
    except Exception as error:
        metrics.RECONCILES.labels(KIND, "error").inc()
        metrics.ERRORS.labels(KIND, type(error).__name__).inc()
        raise
    else:
        metrics.RECONCILES.labels(KIND, "success").inc()
        return waiting
    finally:
        metrics.DURATION.labels(KIND).observe(time.monotonic() - started)


def _cycle(namespace: str, name: str, logger: Logger) -> bool:
    k = runtime.client()
    body = k.get(constants.API_VERSION, KIND, namespace, name)
    if body is None:
        metrics.TRAININGJOB_PHASES.set(namespace, name, None)
        return False
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return False  # the garbage collector removes the Job through its ownerReference
    job = k.get("batch/v1", "Job", namespace, jobs.job_name(name))
    pods = k.list_objects(
        "v1", "Pod", namespace, f"{constants.LABEL_TRAININGJOB_UID}={meta['uid']}"
    )
    warnings: list[dict[str, Any]] = []
    if job and not pods:
        warnings = k.list_events(namespace, job["metadata"]["uid"], "Warning")
    observed = decide.Observed(
        name=name,
        namespace=namespace,
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=body.get("spec") or {},
        status=body.get("status") or {},
        job=job,
        pods=pods,
        job_warnings=warnings,
    )
    now = dt.datetime.now(dt.UTC)
    plan = decide.plan(observed, runtime.build_config(), now)
    if plan.retry_after and decide.needs_champion(observed):
        observed = _with_champion(observed)
        plan = decide.plan(observed, runtime.build_config(), now)
    try:
        if plan.create_job:
            k.apply(plan.create_job)
        if plan.update_job:
            k.apply(plan.update_job, field_manager=MUTABLE_FIELD_MANAGER, force=True)
        if plan.apply_model_version:
            k.apply(plan.apply_model_version)
    except kube.ApiException as error:
        if kube.is_transient(error):
            raise
        # The API server refused the Job (an admission rule, an unknown PriorityClass...):
        # the spec must change, retrying the same request would not help.
        plan = decide.rejected(observed, plan, _api_message(error), now)
    if plan.status != observed.status:
        k.patch_status(constants.API_VERSION, KIND, namespace, name, plan.status)
    for event in plan.events:
        try:
            k.event(body, event.type, event.reason, event.message, now)
        except kube.ApiException as error:  # an Event is not worth failing the cycle
            logger.warning("could not post event %s: %s", event.reason, error.reason)
    metrics.TRAININGJOB_PHASES.set(namespace, name, plan.phase)
    return plan.phase not in ("Succeeded", "Failed", "Suspended") or bool(plan.retry_after)


def _with_champion(observed: decide.Observed) -> decide.Observed:
    """The observation plus the registry's champion (or why it could not be read)."""
    rule = observed.spec["evaluation"]["mustBeatChampion"]
    model = (observed.spec.get("model") or {}).get("name")
    uri = runtime.build_config().mlflow_tracking_uri
    if not uri or not model:
        error = "no MLflow tracking URI configured" if not uri else "spec.model.name is unset"
        return dataclasses.replace(observed, champion_error=error)
    try:
        registered = names.registry_name(observed.namespace, model)
        champion = mlflow_registry.Registry(uri).champion(registered, rule.get("alias", "champion"))
    except mlflow_registry.RegistryUnavailableError as error:
        return dataclasses.replace(observed, champion_error=str(error))
    return dataclasses.replace(observed, champion=champion)


def _api_message(error: kube.ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


def _retrying(namespace: str, name: str, logger: Any, retry: int) -> None:
    try:
        waiting = reconcile(namespace, name, logger)
    except kube.ApiException as error:
        if kube.is_transient(error):
            raise kopf.TemporaryError(
                f"API server: {error.status} {error.reason}", delay=5
            ) from error
        raise
    except OSError as error:
        raise kopf.TemporaryError(f"API server unreachable: {error}", delay=5) from error
    if waiting:
        delay = 5 if retry < FAST_CHECKS else 15
        raise kopf.TemporaryError("run not settled yet; looking again", delay=delay)


@kopf.on.resume(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
@kopf.on.create(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
@kopf.on.update(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
def on_trainingjob(**kwargs: Any) -> None:
    _retrying(kwargs["namespace"], kwargs["name"], kwargs["logger"], kwargs["retry"])


@kopf.on.delete(constants.GROUP, constants.VERSION, "trainingjobs", optional=True)
def on_trainingjob_deleted(**kwargs: Any) -> None:
    metrics.TRAININGJOB_PHASES.set(kwargs["namespace"], kwargs["name"], None)
    runtime.forget_lock(kwargs["namespace"], kwargs["name"])


def _owner_name(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(constants.GROUP):
            return str(ref["name"])
    return None


@kopf.on.event("batch", "v1", "jobs", labels={constants.LABEL_TRAININGJOB: kopf.PRESENT})
def on_job_event(**kwargs: Any) -> None:
    owner = _owner_name(kwargs["body"])
    if owner and kwargs["type"] != "DELETED":
        _best_effort(kwargs["namespace"], owner, kwargs["logger"])


@kopf.on.event("", "v1", "pods", labels={constants.LABEL_TRAININGJOB: kopf.PRESENT})
def on_pod_event(**kwargs: Any) -> None:
    annotations = kwargs["body"].get("metadata", {}).get("annotations") or {}
    owner = annotations.get(jobs.OWNER_ANNOTATION)
    if owner:
        _best_effort(kwargs["namespace"], owner, kwargs["logger"])


def _best_effort(namespace: str, name: str, logger: Any) -> None:
    """Child events are frequent and the next one or a resume retries, so errors only log."""
    try:
        reconcile(namespace, name, logger)
    except Exception as error:  # logged; the next trigger retries
        logger.warning("reconcile of TrainingJob %s/%s failed: %s", namespace, name, error)
