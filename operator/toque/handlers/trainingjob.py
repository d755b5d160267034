"""kopf handlers for TrainingJob and the Jobs and pods it owns.

Every trigger (the TrainingJob changed, its Job changed, one of its pods changed) runs the
same level-triggered cycle: observe everything, ask ``reconcile.trainingjob.plan``, apply
what it says, write status once, post its Events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from typing import Any

import kopf

from toque.api import constants
from toque.clients import kube, mlflow_registry
from toque.handlers import cycle, metrics, runtime
from toque.handlers.cycle import Logger
from toque.reconcile import kubestatus
from toque.reconcile import trainingjob as decide
from toque.resources import trainingjob_job as jobs

KIND = "TrainingJob"
MUTABLE_FIELD_MANAGER = f"{constants.FIELD_MANAGER}-mutable"
FAST_CHECKS = 12


def _cycle(namespace: str, name: str, logger: Logger) -> decide.Plan | None:
    """One observe → decide → act cycle; None when there is nothing to do (gone, deleted)."""
    k = runtime.client()
    body = k.get(constants.API_VERSION, KIND, namespace, name)
    if body is None:
        metrics.TRAININGJOB_PHASES.set(namespace, name, None)
        return None
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return None  # the garbage collector removes the Job through its ownerReference
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
    if kubestatus.changes(plan.status, observed.status):
        k.patch_status(constants.API_VERSION, KIND, namespace, name, plan.status)
    metrics.trainingjob_written(namespace, observed.status, plan.status)
    metrics.trainingjob_finished(namespace, observed.spec, observed.status, plan.status)
    for event in plan.events:
        try:
            k.event(body, event.type, event.reason, event.message, now)
        except kube.ApiException as error:  # an Event is not worth failing the cycle
            logger.warning("could not post event %s: %s", event.reason, error.reason)
    metrics.TRAININGJOB_PHASES.set(namespace, name, plan.phase)
    return plan


def _with_champion(observed: decide.Observed) -> decide.Observed:
    """The observation plus the registry's champion (or why it could not be read)."""
    uri = runtime.build_config().mlflow_tracking_uri
    if not uri:
        return dataclasses.replace(observed, champion_error="no MLflow tracking URI configured")
    query = decide.champion_query(observed)
    if query.registered_model is None:
        return dataclasses.replace(observed, champion_error=query.problem)
    try:
        registry = mlflow_registry.Registry(uri)
        champion = registry.champion(query.registered_model, query.alias)
    except mlflow_registry.RegistryUnavailableError as error:
        return dataclasses.replace(observed, champion_error=str(error))
    return dataclasses.replace(observed, champion=champion)


def _api_message(error: kube.ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


def _target(namespace: str, name: str) -> cycle.Target:
    return cycle.Target(KIND, namespace, name)


def _settle(namespace: str, name: str, logger: Logger, retry: int) -> cycle.LookAgain | None:
    """The cycle, and when to look again: some changes raise no watch event here (the Job
    controller reports pod creation failures only as Events; the registry is outside the
    cluster). An unsettled run is looked at every 5 s for its first minute, then every 15 s.
    """
    plan = _cycle(namespace, name, logger)
    if plan is None or not decide.unsettled(plan):
        return None
    delay = 5.0 if retry < FAST_CHECKS else 15.0
    return cycle.LookAgain(delay, "run not settled yet; looking again")


@kopf.on.resume(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
@kopf.on.create(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
@kopf.on.update(constants.GROUP, constants.VERSION, "trainingjobs", retries=None, backoff=5)
def on_trainingjob(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    settle = functools.partial(_settle, namespace, name, kwargs["logger"], kwargs["retry"])
    cycle.retrying(_target(namespace, name), settle)


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


def _best_effort(namespace: str, name: str, logger: Logger) -> None:
    """Child events are frequent and the next one or a resume retries, so errors only log."""
    cycle.best_effort(
        _target(namespace, name), functools.partial(_cycle, namespace, name, logger), logger
    )
