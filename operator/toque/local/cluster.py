"""A real Kubernetes cluster on one machine: etcd, kube-apiserver (Node and RBAC
authorization, ServiceAccount keys), kube-controller-manager, kube-scheduler, kwok for fake
CPU and GPU nodes, and at most one real node (``node.RealNode``: containerd, runc, CNI,
kubelet, kube-proxy) that pulls from a local registry (``registry.Registry``).

With a real node the API server listens on the pods' bridge (``node.Network``), so pods reach
it through the ``kubernetes`` Service; without one, on 127.0.0.1.

Called by the pytest session fixture (``tests/conftest.py``) and by ``toque-local``
(``make up``). Binaries come from ``KUBEBUILDER_ASSETS`` when a user has envtest binaries,
then from ``TOQUE_TOOLS_BIN``, else from ``hack/build-tools.sh`` (which builds them once into
a cache keyed by their pinned versions). Every component gets free ports, its own client
certificate and a log file under the work directory; ``stop`` (or the parent's death)
ends them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import yaml

from toque.local import node as realnode
from toque.local import pki, processes, registry

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "kubelet",
    "kube-proxy",
    "pause",
)
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
STAGES = pathlib.Path(__file__).with_name("kwok-stages.yaml")
# The real node carries this label, and unless told otherwise this taint, so only pods that
# select it and tolerate the taint run in containers; the rest land on kwok's nodes.
REAL_NODE_LABEL = "toque.dev/real-node"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}


class ClusterError(RuntimeError):
    """A component did not start; the message carries the tail of its log."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """A fake node run by kwok, or with ``real`` the node whose kubelet runs its pods in
    containers (its capacity is the machine's; ``cpu``/``memory`` apply to kwok nodes).

    The real node is labelled ``toque.dev/real-node=true`` and, when ``tainted``, tainted with
    it (NoSchedule); kwok never sees it.
    """

    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    gpus: int = 0
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    real: bool = False
    # The local stack leaves its real node untainted so the plain example lands there.
    tainted: bool = True

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "real" if self.real else "kwok",
            **self.labels,
        }
        taints: list[dict[str, str]] = []
        annotations: dict[str, str] = {}
        if self.real:
            labels[REAL_NODE_LABEL] = "true"
            if self.tainted:
                taints.append(REAL_NODE_TAINT)
        else:
            annotations[KWOK_NODE_ANNOTATION] = "fake"
        if self.gpus:
            labels["nvidia.com/gpu.present"] = "true"
            taints.append(GPU_TAINT)
        spec: dict[str, Any] = {"taints": taints} if taints else {}
        metadata: dict[str, Any] = {"name": self.name, "labels": labels}
        if annotations:
            metadata["annotations"] = annotations
        return {"apiVersion": "v1", "kind": "Node", "metadata": metadata, "spec": spec}

    def capacity(self) -> dict[str, str]:
        out = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        if self.gpus:
            out["nvidia.com/gpu"] = str(self.gpus)
        return out


KWOK_NODES = (
    NodeSpec("cpu-node-0"),
    NodeSpec("cpu-node-1"),
    NodeSpec(
        "gpu-node-0",
        cpu="16",
        memory="64Gi",
        gpus=2,
        labels={"toque.dev/accelerator": "nvidia-h100"},
    ),
)
# The tests' cluster: kwok's nodes for scheduling, and one real node for what must really run.
DEFAULT_NODES = (*KWOK_NODES, NodeSpec("real-node-0", real=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _on_path_dirs() -> list[pathlib.Path]:
    dirs = []
    if os.environ.get("KUBEBUILDER_ASSETS"):
        dirs.append(pathlib.Path(os.environ["KUBEBUILDER_ASSETS"]))
    if os.environ.get("TOQUE_TOOLS_BIN"):
        dirs.append(pathlib.Path(os.environ["TOQUE_TOOLS_BIN"]))
    return dirs


def find_binaries(names: Sequence[str] = BINARIES) -> dict[str, pathlib.Path]:
    """Path of each named binary; builds the missing ones with hack/build-tools.sh."""
    found: dict[str, pathlib.Path] = {}
    for directory in _on_path_dirs():
        for name in names:
            candidate = directory / name
            if name not in found and candidate.is_file() and os.access(candidate, os.X_OK):
                found[name] = candidate
    missing = [n for n in names if n not in found]
    if missing:
        script = REPO_ROOT / "hack" / "build-tools.sh"
        if not script.exists():
            raise ClusterError(
                f"missing {', '.join(missing)}: set TOQUE_TOOLS_BIN or KUBEBUILDER_ASSETS"
            )
        result = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
        directory = pathlib.Path(result.stdout.strip().splitlines()[-1])
        for name in missing:
            found[name] = directory / name
    return found


def gateway_api_crds() -> pathlib.Path:
    """The directory of Gateway API standard-channel CRDs that hack/build-tools.sh provides.

    Resolved: `kubectl apply -f` reads a symlink to a directory as a file and fails.
    """
    for directory in _on_path_dirs():
        if (directory / "gateway-api-crds").is_dir():
            return (directory / "gateway-api-crds").resolve()
    script = REPO_ROOT / "hack" / "build-tools.sh"
    if not script.exists():
        raise ClusterError("no gateway-api-crds: set TOQUE_TOOLS_BIN")
    result = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return (pathlib.Path(result.stdout.strip().splitlines()[-1]) / "gateway-api-crds").resolve()


def _kubeconfig(server: str, ca: pathlib.Path, pair: pki.KeyPair, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "toque-local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
            }
        ],
        "contexts": [{"name": "toque-local", "context": {"cluster": "toque-local", "user": user}}],
        "current-context": "toque-local",
    }


class LocalCluster:
    """Start with ``start()`` (or as a context manager); ``kubeconfig`` is the admin's."""

    def __init__(
        self,
        workdir: pathlib.Path | None = None,
        nodes: Sequence[NodeSpec] = DEFAULT_NODES,
        binaries: dict[str, pathlib.Path] | None = None,
        detached: bool = False,
        network: realnode.Network | None = None,
        proxy: bool = True,
    ) -> None:
        self.proxy = proxy
        real = [n for n in nodes if n.real]
        if len(real) > 1:
            raise ClusterError("one real node per cluster: they would share one kubelet port")
        if real and network is None:
            raise ClusterError("a real node needs a network (node.Network) for its pods")
        self.network = network if real else None
        self.real_node: realnode.RealNode | None = None
        self.registry: registry.Registry | None = None
        self._own_workdir = workdir is None
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="toque-cluster-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = tuple(nodes)
        self.binaries = binaries or find_binaries()
        self.processes: dict[str, processes.Process] = {}
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server = ""
        # Where the API server listens, and the host's services too when pods must reach them.
        self.host = self.network.gateway if self.network else "127.0.0.1"
        # Detached components outlive this process (the local stack); `down` stops them.
        self.detached = detached

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop(keep_workdir=True)
            raise

    def _start(self, timeout: float) -> None:
        pki_dir = self.workdir / "pki"
        ca = pki.CertificateAuthority(pki_dir)
        sa = pki.service_account_keys(pki_dir)
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=tuple(dict.fromkeys(("127.0.0.1", "10.0.0.1", self.host))),
        )
        identities = {
            "admin": ca.issue("admin", "toque-admin", ("system:masters",)),
            "controller-manager": ca.issue("kcm", "system:kube-controller-manager"),
            "scheduler": ca.issue("scheduler", "system:kube-scheduler"),
            # kwok plays many kubelets; system:masters spares it a node-authorizer setup.
            "kwok": ca.issue("kwok", "kwok-controller", ("system:masters",)),
            # The real node's kubelet is authorized as a node (Node authorizer).
            "kubelet": ca.issue("kubelet", f"system:node:{self._real_name()}", ("system:nodes",)),
            "kube-proxy": ca.issue("kube-proxy", "system:kube-proxy"),
        }
        kubelet_client = ca.issue(
            "apiserver-kubelet", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        self._admin_pair = identities["admin"]
        self._ca = ca.cert_path

        etcd_port, etcd_peer = free_port(), free_port()
        self._run(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=toque",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=toque=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_http("etcd", f"http://127.0.0.1:{etcd_port}/health", timeout)

        api_port = free_port()
        self.server = f"https://{self.host}:{api_port}"
        self._run(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={api_port}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--enable-admission-plugins=NodeRestriction",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={realnode.SERVICE_CIDR}",
                "--allow-privileged=false",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--v=1",
            ],
        )
        self._wait_http("kube-apiserver", f"{self.server}/readyz", timeout, tls=True)
        self._write_kubeconfig(self.kubeconfig, identities["admin"], "toque-admin")

        configs = {}
        for component in ("controller-manager", "scheduler", "kwok", "kubelet", "kube-proxy"):
            path = self.workdir / f"{component}.kubeconfig"
            self._write_kubeconfig(path, identities[component], component)
            configs[component] = path
        kcm_port = free_port()
        self._run(
            "kube-controller-manager",
            [
                str(self.binaries["kube-controller-manager"]),
                f"--kubeconfig={configs['controller-manager']}",
                f"--authentication-kubeconfig={configs['controller-manager']}",
                f"--authorization-kubeconfig={configs['controller-manager']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.cert_path}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--controllers=*",
                "--v=1",
            ],
        )
        sched_port = free_port()
        self._run(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                f"--kubeconfig={configs['scheduler']}",
                f"--authentication-kubeconfig={configs['scheduler']}",
                f"--authorization-kubeconfig={configs['scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--v=1",
            ],
        )
        self._run(
            "kwok",
            [
                str(self.binaries["kwok"]),
                f"--kubeconfig={configs['kwok']}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--config={STAGES}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        self._wait_http(
            "kube-controller-manager",
            f"https://127.0.0.1:{kcm_port}/healthz",
            timeout,
            tls=True,
            verify=False,
        )
        self._wait_http(
            "kube-scheduler",
            f"https://127.0.0.1:{sched_port}/healthz",
            timeout,
            tls=True,
            verify=False,
        )
        self._create_nodes()
        if self._real_name():
            self._start_real_node(configs, timeout)
        self.wait_for(
            lambda: self._nodes_ready(), timeout, "the kubelet and kwok to mark nodes Ready"
        )
        self.wait_for(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout,
            "the controller-manager to create the default ServiceAccount",
        )
        (self.workdir / "pids").write_text(
            "\n".join(f"{n} {p.pid}" for n, p in self.processes.items()) + "\n"
        )

    def _real_name(self) -> str:
        return next((n.name for n in self.nodes if n.real), "")

    def _start_real_node(self, configs: dict[str, pathlib.Path], timeout: float) -> None:
        assert self.network is not None
        spec = next(n for n in self.nodes if n.real)
        self.registry = registry.Registry(
            self.workdir / "registry", free_port(), detached=self.detached
        )
        self.registry.start()
        pause = self.registry.push(registry.build_pause_image(self.binaries["pause"]), "pause:v1")
        labels = {
            k: v
            for k, v in spec.manifest()["metadata"]["labels"].items()
            if not k.startswith("kubernetes.io/")
        }
        self.real_node = realnode.RealNode(
            realnode.NodeConfig(
                name=spec.name,
                network=self.network,
                kubelet_kubeconfig=configs["kubelet"],
                proxy_kubeconfig=configs["kube-proxy"],
                client_ca=self._ca,
                registry=self.registry.address,
                pause_image=pause,
                labels=labels,
                taints=tuple(spec.manifest()["spec"].get("taints", ())),
                proxy=self.proxy,
            ),
            self.workdir / "node",
            self.binaries,
            free_port,
            detached=self.detached,
        )
        self.real_node.start(timeout)

    def drain_real_node(self) -> None:
        """Cordon the real node and delete its pods, so the kubelet tears each one down."""
        name = self._real_name()
        self.kubectl("cordon", name, check=False)
        self.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            "--field-selector",
            f"spec.nodeName={name}",
            "--grace-period=1",
            "--wait=false",
            check=False,
        )

    def stop(self, keep_workdir: bool = False) -> None:
        """Stop every component in reverse order; remove the workdir if we made it."""
        if self.real_node:
            self.real_node.stop(drain=self.drain_real_node)
            self.real_node = None
        if self.registry:
            self.registry.stop()
            self.registry = None
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        self.processes.clear()
        if self._own_workdir and not keep_workdir and not os.environ.get("TOQUE_KEEP_CLUSTER"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a child that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        result = subprocess.run(
            [str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def server_version(self) -> str:
        version: str = self.kubectl_json("version")["serverVersion"]["gitVersion"]
        return version

    def install_crds(self, directory: pathlib.Path) -> None:
        """Server-side apply Toque's CRDs and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", "-f", str(directory))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=toque",
            "--timeout=60s",
        )

    def install_gateway_api_crds(self, directory: pathlib.Path | None = None) -> None:
        """Apply the Gateway API CRDs (HTTPRoute, Gateway, ...) and wait until they are served;
        no controller implements them here, so routes are stored but route nothing."""
        crds = str((directory or gateway_api_crds()).resolve())
        self.kubectl("apply", "--server-side", "-f", crds)
        self.kubectl("wait", "--for=condition=Established", "-f", crds, "--timeout=60s")

    def helm(self, *args: str) -> str:
        """Run the real helm against this cluster."""
        extra: list[str] = []
        if args and args[0] in ("template", "lint"):
            # Offline rendering assumes Kubernetes 1.20 unless told which server it targets.
            extra = [f"--kube-version={self.server_version()}"]
        result = subprocess.run(
            [str(self.binaries["helm"]), *args, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
                "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
                "HELM_DATA_HOME": str(self.workdir / "helm-data"),
            },
        )
        if result.returncode != 0:
            raise ClusterError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def wait_for(self, predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
        """Poll ``predicate`` until truthy; fail naming ``what`` and the dead components."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ClusterError, OSError, ValueError, KeyError):
                value = predicate()
                if value:
                    return value
            dead = [n for n, p in self.processes.items() if not p.alive()]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}:\n{self.processes[n].tail()}" for n in dead)
                raise ClusterError(f"timed out waiting for {what}; dead: {dead}\n{logs}")
            time.sleep(interval)

    def _run(self, name: str, argv: list[str]) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.processes[name] = processes.Process(
            name, argv, logs / f"{name}.log", die_with_parent=not self.detached
        )

    def _write_kubeconfig(self, path: pathlib.Path, pair: pki.KeyPair, user: str) -> None:
        path.write_text(yaml.safe_dump(_kubeconfig(self.server, self._ca, pair, user)))
        path.chmod(0o600)

    def _wait_http(
        self, name: str, url: str, timeout: float, tls: bool = False, verify: bool = True
    ) -> None:
        context = None
        if tls:
            context = (
                ssl.create_default_context(cafile=str(self._ca))
                if verify
                else (ssl._create_unverified_context())
            )
            context.load_cert_chain(str(self._admin_pair.cert), str(self._admin_pair.key))

        def ok() -> bool:
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        self.wait_for(ok, timeout, f"{name} at {url}")

    def _create_nodes(self) -> None:
        fake = [n for n in self.nodes if not n.real]
        manifests = {"apiVersion": "v1", "kind": "List", "items": [n.manifest() for n in fake]}
        if fake:
            self.kubectl("apply", "-f", "-", stdin=json.dumps(manifests))
        for node in fake:
            patch = {"status": {"capacity": node.capacity(), "allocatable": node.capacity()}}
            self.kubectl(
                "patch",
                "node",
                node.name,
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps(patch),
            )

    def _nodes_ready(self) -> bool:
        items = self.kubectl_json("get", "nodes")["items"]
        ready = {
            item["metadata"]["name"]
            for item in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
        }
        return {n.name for n in self.nodes} <= ready
