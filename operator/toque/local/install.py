"""Toque installed as a platform team installs it: the real ``helm install`` of the chart, the
operator running as a pod from Toque's image under the chart's ServiceAccount, on the real
node. Used by the local stack (``make up``) and the end-to-end tests.

``OperatorRelease`` also gives the tests what they need of the running operator: stop and
start it (the Deployment scaled to 0 and back), kill its pods, SIGKILL the leader's process as
a crash would, tell the leader from the standby, read the logs (every pod it has had) and the
leader's metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.request
from typing import Any

import yaml

from toque.local import cluster as local

NAMESPACE = "toque-system"
ROLE_LABEL = "toque.dev/role"  # set by each replica: active or standby
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

    @property
    def replicas(self) -> int:
        """The replicas the release runs (the chart's default: 2, one leading)."""
        return int(self.values.get("operator", {}).get("replicas", 2))

    def running_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self._pods()
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]

    def pod(self) -> dict[str, Any]:
        """The leading replica's pod: the one labelled active that holds the Lease (fails
        when none is)."""
        holder = self.lease_holder()
        for pod in self.running_pods():
            labels = pod["metadata"].get("labels") or {}
            if pod["metadata"]["name"] == holder and labels.get(ROLE_LABEL) == "active":
                return pod
        raise local.ClusterError(f"no running operator pod leads (Lease holder {holder!r})")

    def lease(self) -> dict[str, Any]:
        """The operator's Lease ({} when there is none yet)."""
        found = self.cluster.kubectl(
            "get", "lease", self._deployment_name(), "-n", self.namespace, "-o", "json", check=False
        )
        if found.returncode != 0:
            return {}
        lease: dict[str, Any] = json.loads(found.stdout)
        return lease

    def lease_holder(self) -> str:
        """The pod whose process holds the operator's Lease ("" when none does): a
        replica's identity is its pod's name and a suffix of its own."""
        holder = str((self.lease().get("spec") or {}).get("holderIdentity") or "")
        return holder.rpartition("_")[0] if "_" in holder else holder

    def _ready(self) -> bool:
        pods = self.running_pods()
        if len(pods) != self.replicas:
            return False
        if not all(s.get("ready") for p in pods for s in p["status"].get("containerStatuses", [])):
            return False
        try:
            self.pod()
        except local.ClusterError:
            return False
        return True

    def start(self, timeout: float = 120) -> None:
        self.cluster.kubectl(
            "scale",
            "deployment",
            self._deployment_name(),
            "-n",
            self.namespace,
            f"--replicas={self.replicas}",
        )
        self.cluster.wait_for(self._ready, timeout, "the operator's pods to be ready, one leading")

    def crash_leader(self) -> str:
        """SIGKILL the leading replica's process, as a crash or the OOM killer would: no
        shutdown, no Lease released. The kubelet restarts the container. Returns the pod's
        name."""
        pod = self.pod()
        node = self.cluster.real_node
        if node is None:
            raise local.ClusterError("the operator's pods run on the real node; there is none")
        statuses = pod["status"].get("containerStatuses") or []
        container = next(s for s in statuses if s["name"] == "operator")
        task = str(container["containerID"]).rpartition("//")[2]
        self._keep_logs()
        node.ctr("tasks", "kill", "--signal", "SIGKILL", task)
        name: str = pod["metadata"]["name"]
        return name

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
        for pod in self._pods():
            with contextlib.suppress(local.ClusterError):
                self._logs.append(self._pod_log(pod["metadata"]["name"]))

    def _pod_log(self, name: str) -> str:
        return self.cluster.kubectl("logs", name, "-n", self.namespace).stdout

    def current_log(self) -> str:
        """The leading replica's log."""
        return self._pod_log(self.pod()["metadata"]["name"])

    def log(self) -> str:
        """Every line the operator has written in this session, across its pods."""
        text = "".join(self._logs)
        for pod in self._pods():
            with contextlib.suppress(local.ClusterError):
                text += self._pod_log(pod["metadata"]["name"])
        return text

    @property
    def metrics_url(self) -> str:
        port = int(self.values.get("metrics", {}).get("port", 8080))
        return f"http://{self.pod()['status']['podIP']}:{port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())
