"""A real Kubernetes node on this machine: containerd (CRI) with runc, CNI bridge networking
and the kubelet and kube-proxy of the pinned Kubernetes build.

Pods get their own network namespace on a bridge the stack creates (``Network``); the bridge's
gateway address is also where the host's services (API server, MinIO, MLflow, Prometheus)
listen, so pods reach them and nothing binds the host's other interfaces. Settings this host
needs, each found by a failure: runc with the cgroupfs driver (cgroups are v1/hybrid),
``restrict_oom_score_adj`` (no CAP_SYS_RESOURCE to lower a sandbox's oom_score_adj), a node IP
that is not loopback (``kubectl logs`` needs one), a pause image built here (none can be
pulled), and no swap, cgroup-v1 or node-allocatable checks in the kubelet.

``stop`` removes every pod through the kubelet (so CNI tears down each namespace and veth),
then stops the processes, kills any container or shim left, unmounts what is under the work
directory, deletes kube-proxy's nftables tables, the kubelet's cgroups and any veth still on
the bridge; the bridge itself belongs to whoever created it (the stack, the test session).
``leftovers()`` lists what would have stayed behind, and is empty after ``stop``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import yaml

from toque.local import processes

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
CNI_BIN_DIR = "/usr/lib/cni"
# sun_path holds 108 bytes with its terminating NUL.
SOCKET_PATH_MAX = 107
# The API server's --service-cluster-ip-range (cluster.py).
SERVICE_CIDR = "10.0.0.0/24"
# Debian's packages for the node; installed by hack/node-deps.sh when missing.
HOST_TOOLS = ("containerd", "ctr", "runc", "nft", "ip")


class NodeError(RuntimeError):
    """The node did not start or stop cleanly; the message says which part and why."""


@dataclasses.dataclass(frozen=True)
class Network:
    """The pods' bridge: a /24 whose first address is the host's (the node IP)."""

    bridge: str
    subnet: str

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def exists(self) -> bool:
        return pathlib.Path(f"/sys/class/net/{self.bridge}").exists()

    def create(self) -> None:
        if self.exists():
            raise NodeError(
                f"bridge {self.bridge} already exists: another local stack or test run is "
                f"using {self.subnet}; stop it first (make down) or delete the bridge"
            )
        _run("ip", "link", "add", "name", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def delete(self) -> None:
        if self.exists():
            _run("ip", "link", "del", self.bridge)


# The local stack and the test harness use different bridges, so `make up` and `make test`
# can run on one machine at the same time.
STACK_NETWORK = Network("toque0", "10.250.0.0/24")
TEST_NETWORK = Network("toque-test0", "10.251.0.0/24")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def missing_host_tools() -> list[str]:
    return [t for t in HOST_TOOLS if shutil.which(t) is None]


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """What the node needs from the control plane and the registry."""

    name: str
    network: Network
    kubelet_kubeconfig: pathlib.Path
    proxy_kubeconfig: pathlib.Path
    client_ca: pathlib.Path
    registry: str  # host:port of the plain-HTTP registry images are pulled from
    pause_image: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    # kube-proxy's nftables tables have fixed names: only one node per host may run it.
    proxy: bool = True
    max_pods: int = 60


def containerd_config(config: NodeConfig, workdir: pathlib.Path) -> str:
    """containerd 1.6's config (version 2) with every path under ``workdir``."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f'root = "{workdir / "containerd" / "root"}"',
        f'state = "{workdir / "containerd" / "state"}"',
        'disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", '
        '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", '
        '"io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]',
        "[grpc]",
        f'  address = "{socket_path(workdir)}"',
        "[ttrpc]",
        f'  address = "{workdir / "run" / "containerd-ttrpc.sock"}"',
        '[plugins."io.containerd.internal.v1.opt"]',
        f'  path = "{workdir / "containerd" / "opt"}"',
        f"[{cri}]",
        f'  sandbox_image = "{config.pause_image}"',
        # runc cannot lower the sandbox's oom_score_adj without CAP_SYS_RESOURCE.
        "  restrict_oom_score_adj = true",
        # Namespaces under our state directory, not /var/run/netns: whatever is there is ours,
        # beside any other runtime on the host.
        "  netns_mounts_under_state_dir = true",
        "  enable_selinux = false",
        "  disable_apparmor = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        "  SystemdCgroup = false",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{workdir / "cni" / "net.d"}"',
        f"[{cri}.registry]",
        f'  config_path = "{workdir / "containerd" / "certs.d"}"',
    ]
    return "\n".join(lines) + "\n"


def registry_hosts(registry: str) -> str:
    """containerd's hosts.toml: the local registry speaks plain HTTP on loopback."""
    return (
        f'server = "http://{registry}"\n\n'
        f'[host."http://{registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def cni_config(
    network: Network, workdir: pathlib.Path, service_cidr: str = SERVICE_CIDR
) -> dict[str, object]:
    """One bridge, host-local addresses, no masquerading and no default route: pods reach
    the host's services on the gateway address, and Service IPs (kube-proxy's DNAT on the
    host), and nothing beyond the machine."""
    return {
        "cniVersion": "1.0.0",
        "name": "toque",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.subnet, "gateway": network.gateway}]],
                    "routes": [{"dst": service_cidr, "gw": network.gateway}],
                    "dataDir": str(workdir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    config: NodeConfig, workdir: pathlib.Path, ports: dict[str, int]
) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": config.network.gateway,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(config.client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket_path(workdir)}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_name(config.name)}",
        "failSwapOn": False,
        "failCgroupV1": False,
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "podLogsDir": str(workdir / "pod-logs"),
        # No cluster DNS here: pods reach the host's services by address.
        "resolvConf": "",
        "maxPods": config.max_pods,
        "serializeImagePulls": False,
        # The kubelet's iptables chains (hint, canary, localnet firewall) are for iptables-mode
        # kube-proxies; ours uses nftables, and the host keeps its iptables untouched.
        "makeIPTablesUtilChains": False,
        "registerNode": True,
        "registerWithTaints": list(config.taints),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(config: NodeConfig, ports: dict[str, int]) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        # nftables: one table per family, removed whole at stop; no iptables chains.
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(config.proxy_kubeconfig)},
        "hostnameOverride": config.name,
        "clusterCIDR": config.network.subnet,
        "bindAddress": config.network.gateway,
        "healthzBindAddress": f"127.0.0.1:{ports['proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['proxy-metrics']}",
        # Leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        # NodePorts only on the bridge, never on the host's other interfaces.
        "nodePortAddresses": [f"{config.network.gateway}/32"],
    }


def socket_path(workdir: pathlib.Path) -> pathlib.Path:
    return workdir / "run" / "containerd.sock"


def cgroup_name(node: str) -> str:
    return f"toque-{node}"


NFT_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
PROXY_MARK = "kube-proxy-started"


class RealNode:
    """containerd, kubelet and kube-proxy for one node; ``start`` waits for each."""

    def __init__(
        self,
        config: NodeConfig,
        workdir: pathlib.Path,
        binaries: dict[str, pathlib.Path],
        free_port: Callable[[], int],
        detached: bool = False,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.binaries = binaries
        self.detached = detached
        self.processes: dict[str, processes.Process] = {}
        self._free_port = free_port

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        # The kubelet binds unix sockets under its root dir (pod-resources/<10 digits>); a
        # longer path than sun_path's 107 bytes fails its bind, and the node never gets Ready.
        longest = os.fsencode(self.workdir.resolve() / "kubelet" / "pod-resources" / ("9" * 10))
        if len(longest) > SOCKET_PATH_MAX:
            raise NodeError(
                f"the node's workdir {self.workdir} is {len(longest) - SOCKET_PATH_MAX} bytes "
                "too long for the kubelet's unix sockets; choose a shorter one"
            )
        missing = missing_host_tools()
        if missing:
            raise NodeError(
                f"the real node needs {', '.join(missing)} (Debian: containerd, runc, nftables, "
                "iproute2, containernetworking-plugins); run `bash hack/node-deps.sh`"
            )
        for sub in ("run", "containerd/certs.d", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._make_cgroups()
        self._run(
            "containerd",
            [str(shutil.which("containerd")), "--config", str(self.workdir / "containerd.toml")],
        )
        self._wait(lambda: socket_path(self.workdir).exists(), timeout, "containerd's socket")
        self._run(
            "kubelet",
            [
                str(self.binaries["kubelet"]),
                f"--config={self.workdir / 'kubelet.yaml'}",
                f"--kubeconfig={self.config.kubelet_kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                f"--hostname-override={self.config.name}",
                f"--node-ip={self.config.network.gateway}",
                "--node-labels=" + ",".join(f"{k}={v}" for k, v in self.config.labels.items()),
                "--v=1",
            ],
        )
        if self.config.proxy:
            (self.workdir / PROXY_MARK).touch()
            self._run(
                "kube-proxy",
                [
                    str(self.binaries["kube-proxy"]),
                    f"--config={self.workdir / 'kube-proxy.yaml'}",
                    "--v=1",
                ],
            )

    def _write_configs(self) -> None:
        ports = {
            n: self._free_port() for n in ("kubelet", "healthz", "proxy-healthz", "proxy-metrics")
        }
        self.ports = ports
        (self.workdir / "containerd.toml").write_text(containerd_config(self.config, self.workdir))
        hosts = self.workdir / "containerd" / "certs.d" / self.config.registry
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(registry_hosts(self.config.registry))
        (self.workdir / "cni" / "net.d" / "10-toque.conflist").write_text(
            json.dumps(cni_config(self.config.network, self.workdir), indent=2)
        )
        (self.workdir / "kubelet.yaml").write_text(
            yaml.safe_dump(kubelet_config(self.config, self.workdir, ports))
        )
        (self.workdir / "kube-proxy.yaml").write_text(
            yaml.safe_dump(kube_proxy_config(self.config, ports))
        )

    def _make_cgroups(self) -> None:
        # The kubelet wants its cgroup root to exist in every v1 hierarchy it uses.
        for hierarchy in _cgroup_hierarchies():
            (hierarchy / cgroup_name(self.config.name)).mkdir(exist_ok=True)

    def stop(self, drain: Callable[[], None] | None = None, timeout: float = 60.0) -> None:
        """Remove the pods through the kubelet (``drain`` deletes them from the API), then
        every process, mount, namespace, nftables table, cgroup and veth the node made."""
        if drain and self.processes.get("kubelet") and self.processes["kubelet"].alive():
            with contextlib.suppress(Exception):
                drain()
                self._wait(
                    lambda: not self._running_tasks() and not _our_netns(self.workdir),
                    timeout,
                    "the kubelet to stop every pod and tear down its network",
                )
        for name in ("kube-proxy", "kubelet"):
            if name in self.processes:
                self.processes[name].stop()
        self._remove_containers()
        if "containerd" in self.processes:
            self.processes["containerd"].stop()
        self.processes.clear()
        self.clean()

    def clean(self) -> None:
        clean(self.workdir, self.config.name, self.config.network.bridge)

    def leftovers(self) -> list[str]:
        """What this node left on the host; empty after a clean ``stop``."""
        found = [f"veth {v}" for v in _veths_on(self.config.network.bridge)]
        found += [f"netns {n}" for n in _our_netns(self.workdir)]
        found += [f"mount {m}" for m in _mounts_under(self.workdir)]
        found += [f"process {p}" for p in _pids_matching(str(self.workdir))]
        if self.config.proxy:
            tables = _nft_tables()
            found += [f"nftables {f} {t}" for f, t in NFT_TABLES if f"table {f} {t}" in tables]
        rules = _run("iptables-save", check=False).stdout if shutil.which("iptables-save") else ""
        found += [
            f"iptables {line}" for line in rules.splitlines() if "KUBE-" in line or "CNI-" in line
        ]
        found += [
            f"cgroup {h / cgroup_name(self.config.name)}"
            for h in _cgroup_hierarchies()
            if (h / cgroup_name(self.config.name)).exists()
        ]
        return found

    # -- helpers ---------------------------------------------------------------------------

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            "ctr", "--address", str(socket_path(self.workdir)), "-n", "k8s.io", *args, check=check
        )

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]
        return [line.split()[0] for line in out if "RUNNING" in line]

    def _sandboxes(self) -> list[str]:
        out = self.ctr("containers", "ls", "-q", check=False).stdout
        return out.split()

    def _remove_containers(self) -> None:
        if not socket_path(self.workdir).exists():
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "-f", task, check=False)
        for container in self._sandboxes():
            self.ctr("containers", "delete", container, check=False)

    def _run(self, name: str, argv: list[str]) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.processes[name] = processes.Process(
            name, argv, logs / f"{name}.log", die_with_parent=not self.detached
        )

    def _wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            dead = [n for n, p in self.processes.items() if not p.alive()]
            if dead or time.monotonic() > deadline:
                tails = "\n".join(f"--- {n}:\n{self.processes[n].tail()}" for n in dead)
                raise NodeError(f"timed out waiting for {what}; dead: {dead}\n{tails}")
            time.sleep(0.2)


def clean(workdir: pathlib.Path, name: str, bridge: str = "") -> None:
    """Everything a node may leave, whether or not its processes are still ours (``toque-local
    down`` calls it from another process). The bridge belongs to whoever created it."""
    # Container processes outlive a killed shim; they are all in the node's cgroups.
    for pid in _cgroup_pids(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _kill_matching(str(workdir) + "/")
    _wait_until(lambda: not _cgroup_pids(name), 10)
    # Namespaces are nsfs mounts under the state directory: unmounting them frees them.
    _unmount_under(workdir)
    for ns in (workdir / "containerd" / "state").glob("*/netns/*"):
        with contextlib.suppress(OSError):
            ns.unlink()
    if bridge:
        # The kernel frees a namespace, and the veth in it, a moment after its last user.
        _wait_until(lambda: not _veths_on(bridge), 5)
        for veth in _veths_on(bridge):
            _run("ip", "link", "del", veth, check=False)
    if (workdir / PROXY_MARK).exists():
        for family, table in NFT_TABLES:
            _run("nft", "delete", "table", family, table, check=False)
    for hierarchy in _cgroup_hierarchies():
        _remove_cgroup_tree(hierarchy / cgroup_name(name))


def _nft_tables() -> list[str]:
    out = _run("nft", "list", "tables", check=False).stdout
    return [line.strip() for line in out.splitlines() if line.startswith("table ")]


def sweep(network: Network) -> list[pathlib.Path]:
    """Clean what a killed run left on ``network`` (its shims and containers outlive it, and so
    do its mounts, namespaces and bridge), so the next run can start; returns the node
    workdirs it cleaned. Refuses while a kubelet on that network is alive."""
    # Command lines are matched with their NULs as spaces: the trailing one ends the address.
    live = _pids_matching(f"--node-ip={network.gateway} ")
    if live:
        raise NodeError(
            f"a kubelet on {network.bridge} ({network.subnet}) is running (pid {live[0]}): "
            "another local stack or test run is using it; stop it first (make down)"
        )
    cleaned = []
    for workdir in sorted(_node_workdirs()):
        try:
            kubelet = yaml.safe_load((workdir / "kubelet.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        if kubelet.get("address") != network.gateway:
            continue
        clean(workdir, str(kubelet["cgroupRoot"]).removeprefix("/toque-"), network.bridge)
        cleaned.append(workdir)
    network.delete()
    return cleaned


def _node_workdirs() -> set[pathlib.Path]:
    """Node work directories still named by a shim's command line or holding a mount."""
    found: set[pathlib.Path] = set()
    for pid in _pids_matching("/run/containerd.sock"):
        with contextlib.suppress(OSError):
            args = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-address" in args:
                socket = pathlib.Path(args[args.index(b"-address") + 1].decode())
                found.add(socket.parent.parent)
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
            point = pathlib.Path(line.split()[4])
            for parent in point.parents:
                if (parent / "containerd.toml").is_file() and (parent / "kubelet.yaml").is_file():
                    found.add(parent)
                    break
    return {w for w in found if (w / "kubelet.yaml").is_file()}


def _cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        for procs in (hierarchy / cgroup_name(name)).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(pid) for pid in procs.read_text().split())
    return pids


def _wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)


def _our_netns(workdir: pathlib.Path) -> list[str]:
    """The pods' network namespaces (containerd keeps them under its state directory)."""
    return sorted(p.name for p in (workdir / "containerd" / "state").glob("*/netns/*"))


def _list(directory: pathlib.Path) -> list[str]:
    try:
        return [p.name for p in directory.iterdir()]
    except OSError:
        return []


def _cgroup_hierarchies() -> list[pathlib.Path]:
    found = []
    for entry in sorted(_list(CGROUP_ROOT)):
        path = CGROUP_ROOT / entry
        if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists():
            found.append(path)
    return found


def _remove_cgroup_tree(path: pathlib.Path) -> None:
    if not path.is_dir():
        return
    # Children first: a cgroup directory can only be removed when it has none.
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def _mounts_under(root: pathlib.Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    try:
        lines = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4].encode().decode("unicode_escape") for line in lines]
    return [p for p in points if p.startswith(prefix)]


def _unmount_under(root: pathlib.Path) -> None:
    for point in sorted(set(_mounts_under(root)), key=lambda p: -len(p)):
        _run("umount", "-l", point, check=False)


def _veths_on(bridge: str) -> list[str]:
    return _list(pathlib.Path(f"/sys/class/net/{bridge}/brif"))


def _pids_matching(text: str) -> list[int]:
    """Processes whose command line names ``text`` (containerd's shims carry its paths)."""
    found = []
    for entry in _list(pathlib.Path("/proc")):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


def _kill_matching(text: str) -> None:
    for pid in _pids_matching(text):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
