"""What every pod the operator builds shares: the operator's build settings, resources,
the restricted security contexts, the GPU toleration and the MLflow/S3 environment.

Used by ``resources.trainingjob_job`` (training pods) and ``resources.serving`` (model
servers), so both meet the ``restricted`` Pod Security Standard the same way.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from toque.api import common

RUN_AS_USER = 65532


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Operator-wide settings that shape every pod (from Helm values / env)."""

    runtime_image: str = "ghcr.io/toque-dev/toque:0.1.0"
    mlflow_tracking_uri: str | None = None
    s3_endpoint: str | None = None
    data_bucket: str | None = None
    # A Secret in the run's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    credentials_secret: str | None = None


def quantity(value: object) -> str:
    """A quantity as Kubernetes writes it: YAML numbers (``cpu: 0.5``, ``memory: 1e9``)
    become ``0.5`` and ``1000000000``, not ``1000000000.0``; strings pass through."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def compute_resources(res: common.ComputeResources | None) -> dict[str, Any]:
    if res is None:
        return {}
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if res.cpu is not None:
        requests["cpu"] = quantity(res.cpu)
    if res.memory is not None:
        # Memory is incompressible: a limit equal to the request keeps the pod from being the
        # node's OOM victim of choice. CPU gets no limit, to avoid throttling.
        requests["memory"] = quantity(res.memory)
        limits["memory"] = quantity(res.memory)
    if res.gpu:
        requests[res.gpu_resource_name] = str(res.gpu)
        limits[res.gpu_resource_name] = str(res.gpu)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def tolerations(
    user: list[common.Toleration] | None, res: common.ComputeResources | None
) -> list[dict[str, Any]]:
    """The user's tolerations, plus the GPU taint's when GPUs are asked for: GPU node pools
    are tainted so that CPU work stays off them."""
    out = [t.to_kube() for t in user or []]
    if res and res.gpu:
        gpu = {"key": res.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
        if gpu not in out:
            out.append(gpu)
    return out


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _without_userinfo(url: str | None) -> str | None:
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def store_env(config: BuildConfig) -> list[dict[str, Any]]:
    """MLflow and S3 settings; credentials only through Secret refs (the operator never
    reads them). A tracking URI's ``user:password@`` never reaches a pod spec: pods get the
    bare URI and MLflow's username/password from the credentials Secret when it has them."""
    plain = {
        "MLFLOW_TRACKING_URI": _without_userinfo(config.mlflow_tracking_uri),
        "TOQUE_S3_ENDPOINT": config.s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": config.s3_endpoint,
        "TOQUE_DATA_BUCKET": config.data_bucket,
        # MLflow prints run and model URLs to stdout; logs are not the place for them.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "MLFLOW_PRINT_MODEL_URLS_ON_CREATION": "false",
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items() if v]
    if config.credentials_secret:
        required = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        optional = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        for key in (*required, *optional):
            ref: dict[str, Any] = {"name": config.credentials_secret, "key": key}
            if key in optional:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def with_user_env(
    env: list[dict[str, Any]], user: list[common.EnvVar] | None
) -> list[dict[str, Any]]:
    """``env`` with the user's variables, which win over ours of the same name."""
    mine = [e.to_kube() for e in user or []]
    overridden = {e["name"] for e in mine}
    return [e for e in env if e["name"] not in overridden] + mine
