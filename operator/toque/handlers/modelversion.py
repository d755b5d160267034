"""kopf handlers for ModelVersion and the Deployments and pods that serve it.

Every trigger runs the same cycle for the whole model the ModelVersion belongs to: observe
all its versions, their Deployments and pods; register new versions in MLflow; ask
``reconcile.modelversion.plan``; run the analysis it asks for against Prometheus and ask
again; then act in an order that never sends a request to a pod that is going away
(traffic labels first, then scale), move registry aliases, and write each status once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
from typing import Any

import kopf

from toque.api import constants
from toque.api import modelversion as mv
from toque.clients import kube, mlflow_registry, prometheus
from toque.handlers import metrics, runtime
from toque.reconcile import analysis as an
from toque.reconcile import modelversion as decide
from toque.resources import names, serving

KIND = "ModelVersion"
Logger = logging.Logger | logging.LoggerAdapter[Any]
DIGEST_TAG = "toque.model_digest"


def config() -> decide.Config:
    url = os.environ.get("TOQUE_PROMETHEUS_URL") or ""
    return decide.Config(
        build=runtime.build_config(),
        min_window_seconds=int(os.environ.get("TOQUE_ANALYSIS_MIN_WINDOW", "60")),
        prometheus_configured=bool(url),
    )


def reconcile_model(namespace: str, model: str, logger: Logger) -> decide.Plan:
    """One observe → decide → act cycle for every version of ``model``."""
    started = time.monotonic()
    try:
        with runtime.lock_for(namespace, f"model:{model}"):
            plan = _cycle(namespace, model, logger)
    except Exception as error:
        metrics.RECONCILES.labels(KIND, "error").inc()
        metrics.ERRORS.labels(KIND, type(error).__name__).inc()
        raise
    metrics.RECONCILES.labels(KIND, "success").inc()
    metrics.DURATION.labels(KIND).observe(time.monotonic() - started)
    return plan


def _cycle(namespace: str, model: str, logger: Logger) -> decide.Plan:
    k = runtime.client()
    bodies = [
        b
        for b in k.list_objects(constants.API_VERSION, KIND, namespace, "")
        if (b.get("spec") or {}).get("model") == model
    ]
    selector = f"{constants.LABEL_MODEL}={serving.model_label(model)}"
    deployments = k.list_objects("apps/v1", "Deployment", namespace, selector)
    pods = k.list_objects("v1", "Pod", namespace, selector)
    registry = _registry()
    versions = [_observe(k, registry, namespace, b, deployments, pods) for b in bodies]
    observed = decide.Observed(namespace=namespace, model=model, versions=versions)
    now = dt.datetime.now(dt.UTC)
    cfg = config()
    plan = decide.plan(observed, cfg, now)
    if plan.analysis is not None:
        results, error = _analyse(plan.analysis, bodies)
        observed = dataclasses.replace(observed, analysis=results, analysis_error=error)
        plan = decide.plan(observed, cfg, now)
    _act(k, registry, namespace, model, plan, bodies, now, logger)
    return plan


def _registry() -> mlflow_registry.Registry | None:
    uri = runtime.build_config().mlflow_tracking_uri
    return mlflow_registry.Registry(uri) if uri else None


def _pods_of(pods: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """A version's pods, by the annotation its pod template sets (their owner is a
    ReplicaSet, and the label value may be a hashed, shortened name)."""
    key = constants.ANNOTATION_MODELVERSION_NAME
    return [p for p in pods if (p["metadata"].get("annotations") or {}).get(key) == name]


def _owner(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == KIND:
            return str(ref["name"])
    return None


def _observe(
    k: kube.Kube,
    registry: mlflow_registry.Registry | None,
    namespace: str,
    body: dict[str, Any],
    deployments: list[dict[str, Any]],
    pods: list[dict[str, Any]],
) -> decide.Version:
    meta = body["metadata"]
    name = str(meta["name"])
    status = body.get("status") or {}
    deployment = next((d for d in deployments if _owner(d) == name), None)
    version = decide.Version(
        name=name,
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 0),
        created=str(meta.get("creationTimestamp") or ""),
        spec=body.get("spec") or {},
        status=status,
        annotations=meta.get("annotations") or {},
        deployment=deployment,
        pods=_pods_of(pods, name),
        deleting=bool(meta.get("deletionTimestamp")),
    )
    registered = (status.get("registry") or {}).get("version")
    if registered or status.get("phase") in decide.TERMINAL or version.deleting:
        return version
    return _register(k, registry, namespace, version)


def _register(
    k: kube.Kube,
    registry: mlflow_registry.Registry | None,
    namespace: str,
    version: decide.Version,
) -> decide.Version:
    """Resolve the source and register it (idempotent: the registry finds our uid tag)."""
    if registry is None:
        return dataclasses.replace(version, waiting="no MLflow tracking URI configured")
    source = version.spec.get("source") or {}
    model = names.registry_name(namespace, str(version.spec.get("model")))
    tags = {"toque.modelversion": f"{namespace}/{version.name}"}
    try:
        if source.get("trainingJob"):
            resolved, problem, waiting = _from_trainingjob(k, namespace, source["trainingJob"])
            if problem or waiting:
                return dataclasses.replace(version, error=problem, waiting=waiting)
            assert resolved is not None
            tags["toque.trainingjob"] = f"{namespace}/{source['trainingJob']}"
        elif source.get("runId"):
            digest = source.get("modelDigest") or registry.run_tags(source["runId"]).get(DIGEST_TAG)
            resolved = decide.Source(f"runs:/{source['runId']}/model", source["runId"], digest)
        else:
            resolved = decide.Source(str(source.get("modelUri")), None, source.get("modelDigest"))
        if resolved.run_id:
            # The run's lineage (dataset digests, code revision, image) travels with the
            # version, so the registry alone answers "what was this trained on".
            lineage = registry.run_tags(resolved.run_id)
            tags = {**{k: v for k, v in lineage.items() if k.startswith("toque.")}, **tags}
        if resolved.digest:
            tags[DIGEST_TAG] = resolved.digest
        number = registry.register(
            model, resolved.model_uri, resolved.run_id, tags, owner_uid=version.uid
        )
    except mlflow_registry.RegistryNotFoundError as error:
        return dataclasses.replace(version, error=f"not in MLflow: {error}")
    except mlflow_registry.RegistryRejectedError as error:
        return dataclasses.replace(version, error=f"the MLflow registry refused it: {error}")
    except mlflow_registry.RegistryUnavailableError as error:
        return dataclasses.replace(version, registry_error=f"MLflow unreachable: {error}")
    served = decide.Source(f"models:/{model}/{number}", resolved.run_id, resolved.digest)
    return dataclasses.replace(version, source=served, registry_version=number)


def _from_trainingjob(
    k: kube.Kube, namespace: str, name: str
) -> tuple[decide.Source | None, str | None, str | None]:
    """(source, permanent problem, reason to wait)."""
    tj = k.get(constants.API_VERSION, "TrainingJob", namespace, name)
    if tj is None:
        return None, None, f"TrainingJob {name} does not exist (yet)"
    status = tj.get("status") or {}
    phase = status.get("phase")
    if phase == "Failed":
        return None, f"TrainingJob {name} failed: {status.get('message') or ''}".strip(), None
    if phase != "Succeeded" or not status.get("modelUri"):
        return None, None, f"waiting for TrainingJob {name} to succeed (phase {phase or '-'})"
    for c in status.get("conditions") or []:
        if c.get("type") == "GatePassed" and c.get("status") == "False":
            return None, f"TrainingJob {name} did not pass its evaluation gate", None
    source = decide.Source(
        str(status["modelUri"]), status.get("mlflowRunId"), status.get("modelDigest")
    )
    return source, None, None


def _analyse(
    request: decide.AnalysisRequest, bodies: list[dict[str, Any]]
) -> tuple[dict[str, an.Outcome], str | None]:
    body = next(b for b in bodies if b["metadata"]["name"] == request.version)
    spec = mv.ModelVersionSpec.model_validate(body["spec"])
    assert spec.rollout is not None and spec.rollout.analysis is not None
    client = prometheus.Prometheus(os.environ.get("TOQUE_PROMETHEUS_URL") or "")
    outcomes: dict[str, an.Outcome] = {}
    for check in request.checks:
        results: dict[str, list[an.Sample]] = {}
        try:
            for role, query in check.queries.items():
                results[role] = [
                    an.Sample(labels=dict(s.labels), value=float(s.value))
                    for s in client.query(query)
                ]
        except prometheus.PrometheusUnavailableError as error:
            return {}, f"Prometheus unreachable: {error}"
        except prometheus.PrometheusQueryError as error:
            # A query Prometheus refuses stays refused: that is a failed check, not a wait.
            outcomes[check.name] = an.Outcome(check.name, False, None, f"bad query: {error}")
            continue
        outcomes[check.name] = an.evaluate_safely(check, results, spec.rollout.analysis)
    return outcomes, None


def _act(
    k: kube.Kube,
    registry: mlflow_registry.Registry | None,
    namespace: str,
    model: str,
    plan: decide.Plan,
    bodies: list[dict[str, Any]],
    now: dt.datetime,
    logger: Logger,
) -> None:
    # Withdraw pods from traffic before anything scales them down.
    for pod, on in sorted(plan.pod_traffic, key=lambda item: item[1]):
        try:
            k.request(
                "PATCH",
                kube.resource_path("v1", "Pod", namespace, pod),
                body=serving.traffic_patch(on),
                content_type="application/merge-patch+json",
            )
        except kube.ApiException as error:
            if not kube.is_not_found(error):
                raise
    for obj in plan.services:
        k.apply(obj, force=True)
    for obj in plan.deployments:
        k.apply(obj)
    for obj in plan.routes:
        k.apply(obj, force=True)
    if plan.aliases:
        if registry is None:
            raise kopf.TemporaryError("no MLflow tracking URI configured", delay=30)
        for alias, version in plan.aliases:
            registry.set_alias(names.registry_name(namespace, model), alias, version)
    if plan.removed_aliases:
        if registry is None:
            raise kopf.TemporaryError("no MLflow tracking URI configured", delay=30)
        for alias in plan.removed_aliases:
            registry.delete_alias(names.registry_name(namespace, model), alias)
    by_name = {b["metadata"]["name"]: b for b in bodies}
    for name, status in plan.statuses.items():
        body = by_name.get(name)
        if body is None or status == (body.get("status") or {}):
            continue
        try:
            k.patch_status(constants.API_VERSION, KIND, namespace, name, status)
        except kube.ApiException as error:
            if not kube.is_not_found(error):
                raise
        metrics.MODELVERSION_PHASES.set(namespace, name, status.get("phase"))
    for event in plan.events:
        body = by_name.get(event.version)
        if body is None:
            continue
        try:
            k.event(body, event.type, event.reason, event.message, now)
        except kube.ApiException as error:
            logger.warning("could not post event %s: %s", event.reason, error.reason)


def _retrying(
    namespace: str, name: str, model: str, logger: Any, retry: int, deleting: bool = False
) -> None:
    try:
        plan = reconcile_model(namespace, model, logger)
    except mlflow_registry.RegistryUnavailableError as error:
        raise kopf.TemporaryError(f"MLflow unreachable: {error}", delay=10) from error
    except Exception as error:
        if kube.is_transient(error):
            raise kopf.TemporaryError(f"API server: {error}", delay=5) from error
        raise
    phase = (plan.statuses.get(name) or {}).get("phase")
    if not deleting and phase in decide.UNSETTLED:
        delay = plan.requeue_after or decide.QUEUE_POLL_SECONDS
        raise kopf.TemporaryError(f"{phase or 'new'}: looking again", delay=min(delay, 30))


@kopf.on.resume(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
@kopf.on.create(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
@kopf.on.update(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
def on_modelversion(**kwargs: Any) -> None:
    spec = kwargs["spec"]
    _retrying(
        kwargs["namespace"], kwargs["name"], str(spec["model"]), kwargs["logger"], kwargs["retry"]
    )


# Not optional: kopf keeps a finalizer on every ModelVersion, because the registry alias
# (outside the cluster) and the traffic must move to the warm previous version before a
# deleted live version's pods go away.
@kopf.on.delete(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
def on_modelversion_deleted(**kwargs: Any) -> None:
    _retrying(
        kwargs["namespace"],
        kwargs["name"],
        str(kwargs["spec"].get("model")),
        kwargs["logger"],
        kwargs["retry"],
        deleting=True,
    )
    metrics.MODELVERSION_PHASES.set(kwargs["namespace"], kwargs["name"], None)


def _model_of(body: Any) -> str | None:
    annotations = body.get("metadata", {}).get("annotations") or {}
    value = annotations.get(constants.ANNOTATION_MODEL_NAME)
    return str(value) if value else None


@kopf.on.event("", "v1", "pods", labels={constants.LABEL_MODELVERSION: kopf.PRESENT})
def on_serving_pod(**kwargs: Any) -> None:
    model = _model_of(kwargs["body"])
    if model:
        _best_effort(kwargs["namespace"], model, kwargs["logger"])


@kopf.on.event("apps", "v1", "deployments", labels={constants.LABEL_MODELVERSION: kopf.PRESENT})
def on_serving_deployment(**kwargs: Any) -> None:
    model = _model_of(kwargs["body"])
    if model and kwargs["type"] != "DELETED":
        _best_effort(kwargs["namespace"], model, kwargs["logger"])


def _best_effort(namespace: str, model: str, logger: Any) -> None:
    """Child events are frequent and the version's own handler retries, so errors only log."""
    try:
        reconcile_model(namespace, model, logger)
    except Exception as error:  # logged; the next trigger retries
        logger.warning("reconcile of model %s/%s failed: %s", namespace, model, error)
