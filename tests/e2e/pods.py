"""Bare pods for the real node: restricted security context, Toque's image, helpers to wait."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import get, wait
from toque.local import cluster as local

NODE = "real-node-0"
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {local.REAL_NODE_LABEL: "true"},
    "tolerations": [
        {"key": local.REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ],
}
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str, image: str, script: str, **extra: Any) -> dict[str, Any]:
    """A Python script run by the image's interpreter under the restricted profile."""
    return {
        "name": name,
        "image": image,
        "command": ["python", "-c", script],
        "securityContext": RESTRICTED,
        # A crash's last lines land in the status, where a failing test prints them.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **extra,
    }


def pod(
    name: str, *containers: dict[str, Any], restart: str = "Never", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": restart, "containers": list(containers), **ON_REAL_NODE, **spec},
    }


def wait_pod(
    cluster: local.LocalCluster, ns: str, name: str, ok: Any, what: str, timeout: float = 120
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, ns, "pod", name)
        return obj if obj and ok(obj) else None

    result: dict[str, Any] = wait(cluster, check, f"pod {name} {what}", timeout)
    return result


def phase_is(*phases: str) -> Any:
    return lambda obj: obj.get("status", {}).get("phase") in phases


def terminated(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = obj["status"]["containerStatuses"][index]["state"]["terminated"]
    return state
