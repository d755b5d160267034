"""The real node: kubelet + containerd + runc + CNI bridge + kube-proxy, running pods from
Toque's image pulled from the local registry, and leaving nothing behind when it stops."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from tests.e2e import pods
from tests.e2e.helpers import apply
from toque.local import cluster as local
from toque.local import node, services

# What a pod checks from the inside, reported as its termination message.
PROBE = """
import json, os, socket, urllib.request
out = {"uid": os.getuid()}
try:
    open("/opt/toque/written", "w").write("x")
    out["root_write"] = "allowed"
except OSError as error:
    out["root_write"] = error.strerror
open("/scratch/ok", "w").write("x")
out["scratch_write"] = "allowed"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
socket.create_connection((host, int(port)), timeout=5).close()
out["apiserver_via_service"] = f"{host}:{port}"
with urllib.request.urlopen(os.environ["S3"] + "/minio/health/live", timeout=5) as reply:
    out["minio"] = reply.status
out["interfaces"] = sorted(os.listdir("/sys/class/net"))
print("probe done")
open("/dev/termination-log", "w").write(json.dumps(out))
"""


def test_the_real_node_is_ready_tainted_and_runs_containerd(
    cluster: local.LocalCluster, network: node.Network
) -> None:
    obj = cluster.kubectl_json("get", "node", pods.NODE)
    ready = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    assert obj["metadata"]["labels"][local.REAL_NODE_LABEL] == "true"
    assert local.REAL_NODE_TAINT in obj["spec"]["taints"]
    assert obj["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert obj["status"]["nodeInfo"]["kubeletVersion"] == cluster.server_version()
    addresses = {a["type"]: a["address"] for a in obj["status"]["addresses"]}
    assert addresses["InternalIP"] == network.gateway


def test_a_pod_from_toques_image_runs_non_root_read_only_in_its_own_network(
    cluster: local.LocalCluster,
    namespace: str,
    toque_image: str,
    network: node.Network,
    minio: services.Minio,
) -> None:
    probe = pods.container(
        "probe",
        toque_image,
        PROBE,
        env=[{"name": "S3", "value": minio.endpoint}],
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    doc = pods.pod("probe", probe, volumes=[{"name": "scratch", "emptyDir": {}}])
    apply(cluster, namespace, doc)
    obj = pods.wait_pod(
        cluster, namespace, "probe", pods.phase_is("Succeeded", "Failed"), "to finish", 240
    )
    state = pods.terminated(obj)
    assert obj["status"]["phase"] == "Succeeded", state
    report = json.loads(state["message"])
    assert report["uid"] == 1000
    assert report["root_write"] == "Read-only file system"
    assert report["scratch_write"] == "allowed"
    assert report["apiserver_via_service"] == "10.0.0.1:443"  # kube-proxy's DNAT
    assert report["minio"] == 200
    assert report["interfaces"] == ["eth0", "lo"]  # its own namespace, not the host's
    pod_ip = ipaddress.ip_address(obj["status"]["podIP"])
    assert pod_ip in ipaddress.ip_network(network.subnet) and str(pod_ip) != network.gateway
    assert obj["spec"]["nodeName"] == pods.NODE
    logs = cluster.kubectl("logs", "probe", "-n", namespace).stdout
    assert "probe done" in logs


def test_a_failing_container_fails_the_pod_with_its_exit_code(
    cluster: local.LocalCluster, namespace: str, toque_image: str
) -> None:
    apply(
        cluster,
        namespace,
        pods.pod("fails", pods.container("main", toque_image, "import sys; sys.exit(3)")),
    )
    obj = pods.wait_pod(cluster, namespace, "fails", pods.phase_is("Failed"), "to fail", 240)
    assert pods.terminated(obj)["exitCode"] == 3


@pytest.fixture
def spare_network() -> Iterator[node.Network]:
    net = node.Network("toque-spare0", "10.252.0.0/24")
    net.create()
    try:
        yield net
    finally:
        net.delete()


@pytest.mark.parametrize("ending", ["stopped", "killed"])
def test_a_node_that_ends_leaves_no_container_namespace_mount_veth_rule_or_cgroup(
    tmp_path_factory: pytest.TempPathFactory, spare_network: node.Network, ending: str
) -> None:
    """A second node beside the session's, without kube-proxy (whose nftables tables have
    fixed names: the session's own node shows their removal when the session ends).
    ``stopped``: the harness's stop, pods drained through the kubelet. ``killed``: kubelet
    and containerd SIGKILLed with pods running (a crashed run: shims and containers survive
    it), then ``node.sweep``, which the next run (or ``toque-local up``) does before it
    creates its bridge."""
    tables_before = node._nft_tables()
    c = local.LocalCluster(
        # Short: the kubelet's unix sockets live under it (tmp_path's test-named folder is
        # too long for them once pytest's run counter has three digits).
        workdir=tmp_path_factory.mktemp(f"spare-{ending}"),
        nodes=(local.NodeSpec("spare-node-0", real=True, tainted=False),),
        network=spare_network,
        proxy=False,
    )
    c.start()
    real = c.real_node
    assert real is not None and c.registry is not None
    try:
        pause = f"{c.registry.address}/pause:v1"
        for name in ("a", "b"):
            c.kubectl(
                "apply",
                "-f",
                "-",
                stdin=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": name, "namespace": "default"},
                        "spec": {"containers": [{"name": "c", "image": pause}]},
                    }
                ),
            )
        c.wait_for(
            lambda: all(
                c.kubectl_json("get", "pod", n)["status"].get("phase") == "Running"
                for n in ("a", "b")
            ),
            120,
            "two pods running",
        )
        # While it runs, each pod has a namespace, a veth on the bridge and mounts.
        during = real.leftovers()
        assert len([x for x in during if x.startswith("netns ")]) == 2, during
        assert len([x for x in during if x.startswith("veth ")]) == 2, during
        assert any(x.startswith("mount ") for x in during), during
        assert any(x.startswith("process ") for x in during), during
        if ending == "killed":
            with pytest.raises(node.NodeError, match="is running"):
                node.sweep(spare_network)  # never under a live kubelet
            for name in ("kubelet", "containerd"):
                real.processes[name].kill()
            assert node.sweep(spare_network) == [real.workdir]
            assert real.leftovers() == []
            assert not spare_network.exists()
    finally:
        c.stop()
    assert real.leftovers() == []
    assert node._nft_tables() == tables_before
