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
import functools
import os
from typing import Any

import kopf
import pydantic

from toque.api import constants
from toque.api import modelversion as mv
from toque.clients import kube, mlflow_registry, prometheus
from toque.handlers import cycle, metrics, runtime
from toque.handlers.cycle import Logger
from toque.reconcile import analysis as an
from toque.reconcile import kubestatus, registration
from toque.reconcile import modelversion as decide
from toque.resources import names, serving

KIND = "ModelVersion"


def config() -> decide.Config:
    url = os.environ.get("TOQUE_PROMETHEUS_URL") or ""
    return decide.Config(
        build=runtime.build_config(),
        min_window_seconds=int(os.environ.get("TOQUE_ANALYSIS_MIN_WINDOW", "60")),
        prometheus_configured=bool(url),
    )


def _cycle(namespace: str, model: str, logger: Logger) -> decide.Plan:
    """One observe → decide → act cycle for every version of ``model``."""
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
        answers, error = _query(plan.analysis)
        results = decide.outcomes(plan.analysis, answers) if error is None else {}
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
    deployment = next((d for d in deployments if _owner(d) == name), None)
    version = decide.Version(
        name=name,
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 0),
        created=str(meta.get("creationTimestamp") or ""),
        spec=body.get("spec") or {},
        status=body.get("status") or {},
        annotations=meta.get("annotations") or {},
        deployment=deployment,
        pods=_pods_of(pods, name),
        deleting=bool(meta.get("deletionTimestamp")),
    )
    if not decide.needs_registration(version):
        return version
    return _register(k, registry, namespace, version)


def _register(
    k: kube.Kube,
    registry: mlflow_registry.Registry | None,
    namespace: str,
    version: decide.Version,
) -> decide.Version:
    """Read what the source needs, let ``reconcile.registration`` resolve it, and register
    it (idempotent: the registry finds our uid tag)."""
    if registry is None:
        return dataclasses.replace(version, waiting="no MLflow tracking URI configured")
    try:
        spec = mv.ModelVersionSpec.model_validate(version.spec)
    except pydantic.ValidationError:
        return version  # the plan fails the version and says why
    source = spec.source
    model = names.registry_name(namespace, spec.model)
    try:
        trainingjob = None
        if source.training_job:
            trainingjob = k.get(
                constants.API_VERSION, "TrainingJob", namespace, source.training_job
            )
        run = registration.source_run(source, trainingjob)
        tags = registry.run_tags(run) if run else None
        resolution = registration.resolve(source, trainingjob, tags)
        resolved = resolution.source
        if resolved is None:
            return dataclasses.replace(
                version, error=resolution.problem, waiting=resolution.waiting
            )
        version_tags = registration.registry_tags(namespace, version.name, source, resolved, tags)
        number = registry.register(
            model, resolved.model_uri, resolved.run_id, version_tags, owner_uid=version.uid
        )
    except mlflow_registry.RegistryNotFoundError as error:
        return dataclasses.replace(version, error=f"not in MLflow: {error}")
    except mlflow_registry.RegistryRejectedError as error:
        return dataclasses.replace(version, error=f"the MLflow registry refused it: {error}")
    except mlflow_registry.RegistryUnavailableError as error:
        return dataclasses.replace(version, registry_error=f"MLflow unreachable: {error}")
    served = dataclasses.replace(resolved, model_uri=f"models:/{model}/{number}")
    return dataclasses.replace(version, source=served, registry_version=number)


def _query(request: decide.AnalysisRequest) -> tuple[dict[str, an.Answer], str | None]:
    """Prometheus's answers to every check's queries, or why Prometheus could not answer."""
    client = prometheus.Prometheus(os.environ.get("TOQUE_PROMETHEUS_URL") or "")
    answers: dict[str, an.Answer] = {}
    for check in request.checks:
        samples: dict[str, list[an.Sample]] = {}
        try:
            for role, query in check.queries.items():
                samples[role] = [
                    an.Sample(labels=dict(s.labels), value=float(s.value))
                    for s in client.query(query)
                ]
        except prometheus.PrometheusUnavailableError as error:
            return {}, f"Prometheus unreachable: {error}"
        except prometheus.PrometheusQueryError as error:
            answers[check.name] = an.Answer(error=str(error))
            continue
        answers[check.name] = an.Answer(samples=samples)
    return answers, None


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
        if body is None:
            continue
        metrics.MODELVERSION_PHASES.set(namespace, name, status.get("phase"))
        metrics.MODELVERSION_STEPS.set(namespace, name, model, status)
        if not kubestatus.changes(status, body.get("status")):
            continue
        try:
            k.patch_status(constants.API_VERSION, KIND, namespace, name, status)
        except kube.ApiException as error:
            if not kube.is_not_found(error):
                raise
        metrics.modelversion_written(namespace, model, body.get("status"), status)
    for event in plan.events:
        body = by_name.get(event.version)
        if body is None:
            continue
        try:
            k.event(body, event.type, event.reason, event.message, now)
        except kube.ApiException as error:
            logger.warning("could not post event %s: %s", event.reason, error.reason)


def _target(namespace: str, model: str) -> cycle.Target:
    # One lock per model: every cycle decides for all its versions at once.
    return cycle.Target(KIND, namespace, f"model:{model}")


def _settle(namespace: str, name: str, model: str, logger: Logger) -> cycle.LookAgain | None:
    plan = _cycle(namespace, model, logger)
    again = decide.look_again(plan, name)
    return cycle.LookAgain(*again) if again else None


@kopf.on.resume(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
@kopf.on.create(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
@kopf.on.update(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
def on_modelversion(**kwargs: Any) -> None:
    namespace, name, logger = kwargs["namespace"], kwargs["name"], kwargs["logger"]
    model = str(kwargs["spec"]["model"])
    cycle.retrying(
        _target(namespace, model), functools.partial(_settle, namespace, name, model, logger)
    )


def _deleted(namespace: str, model: str, logger: Logger) -> None:
    _cycle(namespace, model, logger)  # settled once traffic and alias have moved


# Not optional: kopf keeps a finalizer on every ModelVersion, because the registry alias
# (outside the cluster) and the traffic must move to the warm previous version before a
# deleted live version's pods go away.
@kopf.on.delete(constants.GROUP, constants.VERSION, "modelversions", retries=None, backoff=5)
def on_modelversion_deleted(**kwargs: Any) -> None:
    namespace, logger = kwargs["namespace"], kwargs["logger"]
    model = str(kwargs["spec"].get("model"))
    cycle.retrying(_target(namespace, model), functools.partial(_deleted, namespace, model, logger))
    metrics.MODELVERSION_PHASES.set(namespace, kwargs["name"], None)
    metrics.MODELVERSION_STEPS.forget(namespace, kwargs["name"])


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


def _best_effort(namespace: str, model: str, logger: Logger) -> None:
    """Child events are frequent and the version's own handler retries, so errors only log."""
    cycle.best_effort(
        _target(namespace, model), functools.partial(_cycle, namespace, model, logger), logger
    )
