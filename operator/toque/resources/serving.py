"""Builds what serves a ModelVersion: its Deployment, the model's Service and HTTPRoute.

Called by ``reconcile.modelversion``. Every version gets its own Deployment (owned by its
ModelVersion); the model has one Service that selects pods the operator admitted with
``toque.dev/traffic=on``, so traffic moves between versions by relabelling ready pods, which
is instant both ways, and a superseded version can stay warm without taking requests.
Pods meet the ``restricted`` Pod Security Standard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from toque.api import constants
from toque.api import modelversion as mv
from toque.resources import names, pods

CONTAINER_NAME = "server"
PORT_NAME = "http"
SERVICE_PORT = 80
TRAFFIC_ON = "on"
TRAFFIC_OFF = "off"
_PORT = {"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}
# The server drains for 5 s after SIGTERM, then gives in-flight requests up to 30 s.
TERMINATION_GRACE_SECONDS = 45


@dataclasses.dataclass(frozen=True)
class Owner:
    """The ModelVersion a serving object belongs to."""

    name: str
    namespace: str
    uid: str


def owner_reference(owner: Owner, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "ModelVersion",
        "name": owner.name,
        "uid": owner.uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def model_label(model: str) -> str:
    """Registered model names allow characters and lengths that label values do not."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", model)
    if cleaned == model and len(model) <= names.MAX_LABEL_VALUE and model[-1].isalnum():
        return model
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"{cleaned[:50].rstrip('-_.')}-{digest}"


def service_name(model: str) -> str:
    """A DNS-1035 label for the model's Service: lower case, dashes, starts with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"m-{cleaned}".rstrip("-")
    if cleaned == model and len(cleaned) <= names.MAX_LABEL_VALUE:
        return cleaned
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"{cleaned[:54].rstrip('-')}-{digest}"


def deployment_name(mv_name: str) -> str:
    return names.child_name(mv_name, "server")


def version_service_name(mv_name: str) -> str:
    """Per-version Service, the backend of a Gateway API HTTPRoute."""
    return names.child_name(mv_name, "server")


def selector(owner: Owner) -> dict[str, str]:
    return {constants.LABEL_MODELVERSION: names.label_value(owner.name)}


def pod_labels(owner: Owner, model: str, registry_version: str) -> dict[str, str]:
    return {
        **selector(owner),
        constants.LABEL_MODEL: model_label(model),
        constants.LABEL_MODEL_VERSION: registry_version,
        constants.LABEL_MANAGED_BY: "toque",
        constants.LABEL_PART_OF: "toque",
        constants.LABEL_COMPONENT: "serving",
    }


def _env(config: pods.BuildConfig) -> list[dict[str, Any]]:
    return pods.store_env(config)


@dataclasses.dataclass(frozen=True)
class Served:
    """What the pods serve: the registry version and the digest it must have."""

    model: str
    registry_version: str
    model_uri: str
    digest: str | None
    # The user opted out of the digest check (spec.source.allowUnverified); without a digest
    # and without this, the server refuses to load (and unpickle) the model.
    allow_unverified: bool = False


def deployment(
    owner: Owner,
    spec: mv.ModelVersionSpec,
    served: Served,
    replicas: int,
    config: pods.BuildConfig,
) -> dict[str, Any]:
    """The version's Deployment at ``replicas``; its pods start out of traffic."""
    serving = spec.serving or mv.ServingSpec()
    args = [
        "serve",
        "--model-uri",
        served.model_uri,
        "--model-name",
        served.model,
        "--version",
        served.registry_version,
        # Every address of the pod's own network namespace: its IP for probes, endpoints and
        # Prometheus, and localhost for `kubectl port-forward`.
        "--host",
        "0.0.0.0",
        "--port",
        str(serving.port),
    ]
    if served.digest:
        args += ["--expected-digest", served.digest]
    elif served.allow_unverified:
        args += ["--allow-unverified"]
    if config.data_bucket:
        args += ["--sample-bucket", config.data_bucket, "--sample-namespace", owner.namespace]
    if serving.sample_rate is not None:
        args += ["--sample-rate", str(serving.sample_rate)]
    if serving.batching is not None:
        args += [
            "--batch-max-rows",
            str(serving.batching.max_rows),
            "--batch-max-latency-ms",
            str(serving.batching.max_latency_ms),
        ]
    probe = {"httpGet": {"path": "/readyz", "port": PORT_NAME}, "periodSeconds": 2}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": serving.image or config.runtime_image,
        "command": ["toque"],
        "args": args,
        "env": pods.with_user_env(_env(config), serving.env),
        "ports": [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        # Loading a model from the store can take a while; liveness waits for it.
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 150,
        },
        "resources": pods.compute_resources(serving.resources),
        "terminationMessagePath": constants.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": pods.container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    labels = pod_labels(owner, spec.model, served.registry_version)
    annotations = {
        constants.ANNOTATION_MODEL_NAME: spec.model,
        constants.ANNOTATION_MODELVERSION_NAME: owner.name,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(serving.port),
        "prometheus.io/path": "/metrics",
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": pods.pod_security(),
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    tolerations = pods.tolerations(serving.tolerations, serving.resources)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {constants.ANNOTATION_MODEL_NAME: spec.model},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(owner)},
            # New pods come up before old ones go: a version never drops below its size.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 2,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def model_service(namespace: str, model: str, owners: list[Owner]) -> dict[str, Any]:
    """One Service per model; every ModelVersion of the model co-owns it, so it goes away
    with the last of them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(model),
            "namespace": namespace,
            "labels": {
                constants.LABEL_MODEL: model_label(model),
                constants.LABEL_MANAGED_BY: "toque",
                constants.LABEL_PART_OF: "toque",
            },
            "annotations": {constants.ANNOTATION_MODEL_NAME: model},
            "ownerReferences": [owner_reference(o, controller=False) for o in owners],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {
                constants.LABEL_MODEL: model_label(model),
                constants.LABEL_TRAFFIC: TRAFFIC_ON,
            },
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def version_service(owner: Owner) -> dict[str, Any]:
    """All ready pods of one version, whatever their traffic label (HTTPRoute backend)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": version_service_name(owner.name),
            "namespace": owner.namespace,
            "labels": {constants.LABEL_MANAGED_BY: "toque", constants.LABEL_PART_OF: "toque"},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def http_route(
    namespace: str,
    model: str,
    parent_refs: list[mv.HTTPRouteRef],
    weights: list[tuple[str, int]],
    owners: list[Owner],
) -> dict[str, Any]:
    """Gateway API HTTPRoute splitting traffic by weight over per-version Services."""
    refs = []
    for ref in parent_refs:
        item: dict[str, Any] = {"name": ref.name}
        if ref.namespace:
            item["namespace"] = ref.namespace
        if ref.section_name:
            item["sectionName"] = ref.section_name
        refs.append(item)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": service_name(model),
            "namespace": namespace,
            "labels": {
                constants.LABEL_MODEL: model_label(model),
                constants.LABEL_MANAGED_BY: "toque",
            },
            "annotations": {constants.ANNOTATION_MODEL_NAME: model},
            "ownerReferences": [owner_reference(o, controller=False) for o in owners],
        },
        "spec": {
            "parentRefs": refs,
            "rules": [
                {
                    "backendRefs": [
                        {"name": version_service_name(mv_name), "port": SERVICE_PORT, "weight": w}
                        for mv_name, w in weights
                    ]
                }
            ],
        },
    }


def traffic_patch(on: bool) -> dict[str, Any]:
    """Merge patch admitting a pod to (or withdrawing it from) the model's Service."""
    return {"metadata": {"labels": {constants.LABEL_TRAFFIC: TRAFFIC_ON if on else TRAFFIC_OFF}}}
