"""A stand-in kubelet for test nodes labelled ``toque.dev/local-exec=true``: pods bound to its
node run for real, as local processes; kwok keeps simulating every other node.

``LocalCluster`` starts one agent per local node as a child process::

    python -m toque.local.nodeagent --kubeconfig K --node local-node-0 --workdir W \\
        [--cpu 4] [--memory 16Gi] [--pods 110]

This module keeps the node and lists its pods; ``nodeagent_pod`` runs each pod in a thread,
``nodeagent_process`` starts, signals and probes processes, and the pure ``nodeagent_env`` and
``nodeagent_status`` build environments and pod status.

What it does, like a kubelet:

* keeps its Node Ready: conditions, capacity/allocatable, InternalIP 127.0.0.1 and nodeInfo
  every 5 s, and renews its Lease in ``kube-node-lease``; creates the Node (labelled and
  tainted ``toque.dev/local-exec=true:NoSchedule``) if it does not exist;
* polls the pods with ``spec.nodeName`` = its node every 0.5 s; runs init containers one by
  one, then every container's ``command`` + ``args`` as a process in its own session, with
  output to ``<workdir>/pods/<ns>_<name>_<uid>/logs/<container>.log``;
* environment: ``env`` with ``$(VAR)`` expansion, ``valueFrom`` secretKeyRef /
  configMapKeyRef / fieldRef, ``envFrom``; a missing Secret, ConfigMap or key leaves the
  container waiting with CreateContainerConfigError and is retried. PATH starts with the
  agent's own Python's directory (the virtualenv), so ``python`` and ``toque`` resolve there;
  HOME and TMPDIR are per-pod directories. Nothing else of the agent's own environment is
  passed on (no KUBECONFIG, no credentials): PATH, HOME, TMPDIR, HOSTNAME, the ``TOQUE_*``
  paths below and the pod spec's variables, which win;
* each pod gets its own address as ``status.podIP``, never reused in one agent run: a /32 on
  ``lo`` from a random 10.x/16 when the agent may add addresses (root or CAP_NET_ADMIN),
  removed when the agent stops, else 127.1.0.1 upward (Kubernetes keeps loopback addresses
  out of EndpointSlices, so Services then have no endpoints); hostIP is 127.0.0.1;
* termination message: each container writes to the file named by
  ``TOQUE_TERMINATION_MESSAGE_PATH`` (its last 4096 bytes are kept); with
  ``FallbackToLogsOnError``, a failed container with an empty file gets its log's last 80
  lines / 2048 bytes;
* restartPolicy Never / OnFailure / Always with restartCount and a short back-off (1 s
  doubling to 10 s); readiness probes (httpGet, tcpSocket, exec) drive Ready;
  activeDeadlineSeconds fails the pod with reason DeadlineExceeded;
* deletion: SIGTERM to the process group, SIGKILL after the grace period (capped at 10 s),
  a final status, then the delete is confirmed with gracePeriodSeconds=0. Finalizers (such as
  the Job controller's) are left to their owners;
* a pod an earlier agent was running is marked Failed with reason NodeAgentRestarted (its
  processes died with that agent) and is not run again. A new agent draws new addresses.

What it does NOT do:

* images are ignored (no pull, no image entrypoint or env): a container without ``command``
  fails with reason NoCommand; securityContext is ignored and processes run as the agent's
  user;
* no isolation: no cgroups, so no resource limits and no OOMKilled; no namespaces of any kind
  (mount, network, PID); ports are not mapped, a server binds to its podIP itself;
* volumes: only emptyDir, as per-pod directories whose paths are exported as
  ``TOQUE_VOLUME_<NAME>`` (they survive container restarts and go with the pod);
  ``mountPath`` is NOT honoured (nothing is mounted), and every other volume type (configMap,
  secret, projected service-account tokens, PVCs, hostPath) is ignored. ``workingDir`` maps
  to ``<pod dir>/wd/<path with / as _>``, as there is no chroot;
* no service-account token, no ``KUBERNETES_SERVICE_*`` variables, no DNS for Services;
* no liveness or startup probes, no gRPC probes, no lifecycle hooks, no native sidecars
  (init containers with restartPolicy fail the pod), no ``resourceFieldRef``;
* no kubelet API: ``kubectl logs`` / ``exec`` / ``port-forward`` / ``attach`` do not work
  (read the log files instead); no static pods, no eviction, no node-pressure reporting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import pathlib
import platform
import signal
import sys
import threading
import time
from typing import Any

import kubernetes

from toque.clients import kube as kube_client
from toque.local import nodeagent_pod, nodeagent_process

LOG = logging.getLogger("toque.nodeagent")
LOCAL_EXEC_LABEL = "toque.dev/local-exec"
LOCAL_EXEC_TAINT = {"key": LOCAL_EXEC_LABEL, "value": "true", "effect": "NoSchedule"}
HOST_IP = "127.0.0.1"
HEARTBEAT_SECONDS = 5.0
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
SHUTDOWN_JOIN_SECONDS = 8.0
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_NODE_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "toque local node agent is posting ready status"),
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure is reported"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure is reported"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure is reported"),
)


def _read_text(path: str) -> str:
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError:
        return ""


def node_manifest(name: str) -> dict[str, Any]:
    """The Node the agent registers when nobody created it beforehand."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
                "type": "local",
                LOCAL_EXEC_LABEL: "true",
            },
        },
        "spec": {"taints": [LOCAL_EXEC_TAINT]},
    }


class Agent:
    """The node's heartbeat and lease, and one ``PodWorker`` per pod bound to the node."""

    def __init__(
        self,
        kube: kube_client.Kube,
        node: str,
        workdir: pathlib.Path,
        capacity: dict[str, str],
        code_paths: tuple[str, ...] = (),
    ) -> None:
        self.kube = kube
        self.node = node
        self.capacity = capacity
        self.stopping = threading.Event()
        self.ctx = nodeagent_pod.Context(
            kube=kube,
            node=node,
            host_ip=HOST_IP,
            workdir=workdir,
            ips=nodeagent_process.IPAllocator(),
            stopping=self.stopping,
            path_prefix=str(pathlib.Path(sys.executable).parent),
            python_path=":".join(code_paths),
        )
        self.workers: dict[str, nodeagent_pod.PodWorker] = {}
        self._ended: list[nodeagent_pod.PodWorker] = []
        self._node_uid = ""
        self._transitions: dict[str, tuple[str, str]] = {}
        self._version = ""
        self._last_beat = 0.0

    def run(self) -> None:
        """Until ``stopping`` is set; then stop every pod's processes and return."""
        failures = 0
        while not self.stopping.is_set():
            ok = True
            for step in (self._keep_node, self._sync_pods):
                try:
                    step()
                except Exception as error:
                    # The API server may be restarting or slow: log and try again, a bit
                    # later each time so an outage does not flood the log.
                    ok = False
                    LOG.warning("%s failed (%d in a row): %s", step.__name__, failures + 1, error)
            failures = 0 if ok else failures + 1
            self.stopping.wait(nodeagent_pod.POLL_SECONDS * min(2**failures, 10))
        self._shutdown()

    # -- the node -------------------------------------------------------------------------

    def _keep_node(self) -> None:
        if not self._node_uid:
            self._register()
        if time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
            try:
                self._heartbeat()
            except kube_client.ApiException as error:
                if error.status == 404:
                    self._node_uid = ""  # someone deleted the Node: register it again
                raise
            self._last_beat = time.monotonic()

    def _register(self) -> None:
        path = f"/api/v1/nodes/{self.node}"
        try:
            node = self.kube.request("GET", path)
        except kube_client.ApiException as error:
            if error.status != 404:
                raise
            LOG.info("node %s does not exist; registering it", self.node)
            node = self.kube.request("POST", "/api/v1/nodes", body=node_manifest(self.node))
        self._transitions = {}
        self._last_beat = 0.0
        for condition in (node.get("status") or {}).get("conditions") or []:
            self._transitions[condition["type"]] = (
                condition.get("status", ""),
                condition.get("lastTransitionTime", ""),
            )
        self._version = self.kube.request("GET", "/version").get("gitVersion", "")
        self._node_uid = node["metadata"]["uid"]
        LOG.info("node agent for %s registered (kubelet version %s)", self.node, self._version)

    def _conditions(self, now: str) -> list[dict[str, Any]]:
        out = []
        for type_, status, reason, message in _NODE_CONDITIONS:
            before, since = self._transitions.get(type_, ("", ""))
            if before != status or not since:
                since = now
                self._transitions[type_] = (status, since)
            out.append(
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": since,
                }
            )
        return out

    def node_status(self, now: str) -> dict[str, Any]:
        machine = platform.machine()
        return {
            "conditions": self._conditions(now),
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": self.node},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": _read_text("/etc/machine-id"),
                "systemUUID": "",
                "bootID": _read_text("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": f"toque local node agent on {platform.system()}",
                "containerRuntimeVersion": "toque-local://0.1.0",
                "kubeletVersion": self._version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _ARCH.get(machine, machine),
            },
        }

    def _heartbeat(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self.kube.request(
            "PATCH",
            f"/api/v1/nodes/{self.node}/status",
            body={"status": self.node_status(now.strftime("%Y-%m-%dT%H:%M:%SZ"))},
            content_type="application/strategic-merge-patch+json",
        )
        spec = {
            "holderIdentity": self.node,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        try:
            self.kube.request(
                "PATCH",
                f"{leases}/{self.node}",
                body={"spec": spec},
                content_type="application/merge-patch+json",
            )
        except kube_client.ApiException as error:
            if error.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self._node_uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.node,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [owner],
                },
                "spec": spec,
            }
            self.kube.request("POST", leases, body=lease)

    # -- pods -----------------------------------------------------------------------------

    def _sync_pods(self) -> None:
        listed = self.kube.request(
            "GET", "/api/v1/pods", query=[("fieldSelector", f"spec.nodeName={self.node}")]
        )
        seen = set()
        for pod in listed.get("items") or []:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if worker is None:
                worker = nodeagent_pod.PodWorker(self.ctx, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid in set(self.workers) - seen:
            worker = self.workers.pop(uid)
            worker.gone()
            self._ended.append(worker)
        self._ended = [w for w in self._ended if w.thread.is_alive()]

    def _shutdown(self) -> None:
        LOG.info("stopping: ending every pod's processes")
        for worker in [*self.workers.values(), *self._ended]:
            worker.thread.join(SHUTDOWN_JOIN_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toque.local.nodeagent",
        description="Run pods bound to one node as local processes (a test kubelet).",
    )
    parser.add_argument("--kubeconfig", required=True, type=pathlib.Path)
    parser.add_argument("--node", required=True)
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--cpu", default="4")
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--pods", default="110")
    parser.add_argument(
        "--code-path",
        action="append",
        default=[],
        help="put on every pod's PYTHONPATH: stands in for the code a training image holds",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # urllib3 warns of each connection retry; our own line per failed sync says enough.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    args.workdir.mkdir(parents=True, exist_ok=True)
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(args.kubeconfig), client_configuration=config
    )
    # Every pod worker talks to the API server from its own thread.
    config.connection_pool_maxsize = 32
    api = kubernetes.client.ApiClient(config)
    agent = Agent(
        kube_client.Kube(api),
        args.node,
        args.workdir,
        {"cpu": args.cpu, "memory": args.memory, "pods": args.pods},
        tuple(args.code_path),
    )

    def stop(*_: object) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    finally:
        agent.ctx.ips.release_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
