"""Toque installed as a platform team installs it: the real ``helm install`` of the chart, the
operator running as a pod from Toque's image under the chart's ServiceAccount, on the real
node. Used by the local stack (``make up``) and the end-to-end tests.

``OperatorRelease`` also gives the tests what they need of the running operator: stop and
start it (the Deployment scaled to 0 and back), kill its pod as a crash would, read its logs
(every pod it has had) and its metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.request
from typing import Any

import yaml

from toque.local import cluster as local

NAMESPACE = "toque-system"
CHART = local.REPO_ROOT / "helm" / "toque"


def split_image(reference: str) -> tuple[str, str]:
    """``registry:port/name:tag`` → (``registry:port/name``, ``tag``)."""
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"image reference {reference!r} has no tag")
    return repository, tag


def on_real_node(tainted: bool = True) -> dict[str, Any]:
    """Values that put the operator's pod on the real node (kwok's nodes run nothing), with
    the annotations the local Prometheus finds targets by (it has no ServiceMonitor CRDs),
    so its ``toque_*`` metrics, the drift verdicts among them, are in Prometheus."""
    values: dict[str, Any] = {
        "nodeSelector": {local.REAL_NODE_LABEL: "true"},
        "podAnnotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080",  # the chart's metrics.port
            "prometheus.io/path": "/metrics",
        },
    }
    if tainted:
        values["tolerations"] = [
            {"key": local.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
        ]
    return values


@dataclasses.dataclass
class OperatorRelease:
    cluster: local.LocalCluster
    image: str
    values: dict[str, Any]
    release: str = "toque"
    namespace: str = NAMESPACE
    _logs: list[str] = dataclasses.field(default_factory=list)

    def install(self, timeout: str = "5m") -> str:
        repository, tag = split_image(self.image)
        values = {
            **self.values,
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        }
        path = self.cluster.workdir / f"{self.release}-values.yaml"
        path.write_text(yaml.safe_dump(values))
        out = self.cluster.helm(
            "install",
            self.release,
            str(CHART),
            "--namespace",
            self.namespace,
            "--create-namespace",
            "-f",
            str(path),
            "--wait",
            f"--timeout={timeout}",
        )
        self._deployment_name()
        return out

    def uninstall(self) -> None:
        self.cluster.helm("uninstall", self.release, "--namespace", self.namespace, "--wait")

    def _deployment_name(self) -> str:
        items = self.cluster.kubectl_json(
            "get",
            "deployment",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/instance={self.release}",
        )["items"]
        if len(items) != 1:
            raise local.ClusterError(f"release {self.release}: {len(items)} Deployments")
        name: str = items[0]["metadata"]["name"]
        return name

    def pod(self) -> dict[str, Any]:
        """The operator's running pod (fails when none is)."""
        running = [
            p
            for p in self._pods()
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        if len(running) != 1:
            raise local.ClusterError(f"{len(running)} running operator pods")
        found: dict[str, Any] = running[0]
        return found

    def _ready(self) -> bool:
        pod = self.pod()
        return all(s.get("ready") for s in pod["status"].get("containerStatuses", []))

    def start(self, timeout: float = 120) -> None:
        self.cluster.kubectl(
            "scale", "deployment", self._deployment_name(), "-n", self.namespace, "--replicas=1"
        )
        self.cluster.wait_for(self._ready, timeout, "the operator's pod to be ready")

    def stop(self, timeout: float = 60) -> None:
        """Scale to zero and wait until the pod is gone (its logs are kept)."""
        self._keep_logs()
        self.cluster.kubectl(
            "scale", "deployment", self._deployment_name(), "-n", self.namespace, "--replicas=0"
        )
        self.cluster.wait_for(self._no_pods, timeout, "the operator's pod to go")

    def kill(self) -> None:
        """The operator stopped mid-work: the Deployment is scaled to zero (the kubelet stops
        the pod at once) and the pod force-deleted from the API, and it stays at zero until
        ``start``. Not a SIGKILL of the process: force-deleting alone would leave the old
        pod running on the node for its grace period, still reconciling."""
        self._keep_logs()
        self.cluster.kubectl(
            "scale", "deployment", self._deployment_name(), "-n", self.namespace, "--replicas=0"
        )
        self.cluster.kubectl(
            "delete",
            "pods",
            "-n",
            self.namespace,
            "-l",
            f"app.kubernetes.io/instance={self.release}",
            "--grace-period=0",
            "--force",
            check=False,
        )
        self.cluster.wait_for(self._no_pods, 60, "the operator's pod to go")

    def _pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", f"app.kubernetes.io/instance={self.release}"
        )["items"]
        return items

    def _no_pods(self) -> bool:
        return not self._pods()

    def _keep_logs(self) -> None:
        with contextlib.suppress(local.ClusterError):
            self._logs.append(self.current_log())

    def current_log(self) -> str:
        name = self.pod()["metadata"]["name"]
        return self.cluster.kubectl("logs", name, "-n", self.namespace).stdout

    def log(self) -> str:
        """Every line the operator has written in this session, across its pods."""
        text = "".join(self._logs)
        try:
            return text + self.current_log()
        except local.ClusterError:
            return text

    @property
    def metrics_url(self) -> str:
        port = int(self.values.get("metrics", {}).get("port", 8080))
        return f"http://{self.pod()['status']['podIP']}:{port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())
