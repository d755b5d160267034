"""The real node's generated configuration: what each setting is there for."""

from __future__ import annotations

import pathlib
import tomllib

import pytest

from toque.local import install, node

NET = node.Network("toque-x0", "10.99.0.0/24")
CONFIG = node.NodeConfig(
    name="n0",
    network=NET,
    kubelet_kubeconfig=pathlib.Path("/k/kubelet.kubeconfig"),
    proxy_kubeconfig=pathlib.Path("/k/proxy.kubeconfig"),
    client_ca=pathlib.Path("/k/ca.crt"),
    registry="127.0.0.1:5999",
    pause_image="127.0.0.1:5999/pause:v1",
    taints=({"key": "toque.dev/real-node", "value": "true", "effect": "NoSchedule"},),
)
WORK = pathlib.Path("/w/node")


def test_the_gateway_is_the_subnets_first_address() -> None:
    assert (NET.gateway, NET.prefix) == ("10.99.0.1", 24)


def test_containerd_keeps_everything_under_the_workdir_and_suits_this_host() -> None:
    config = tomllib.loads(node.containerd_config(CONFIG, WORK))
    assert config["root"].startswith("/w/node/") and config["state"].startswith("/w/node/")
    assert config["grpc"]["address"] == "/w/node/run/containerd.sock"
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True  # never /var/run/netns
    assert cri["sandbox_image"] == "127.0.0.1:5999/pause:v1"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == "/w/node/cni/net.d"
    assert cri["registry"]["config_path"] == "/w/node/containerd/certs.d"


def test_the_local_registry_is_pulled_from_over_plain_http() -> None:
    hosts = tomllib.loads(node.registry_hosts("127.0.0.1:5999"))
    assert hosts["server"] == "http://127.0.0.1:5999"
    assert hosts["host"]["http://127.0.0.1:5999"]["capabilities"] == ["pull", "resolve"]


def test_pods_route_only_to_the_bridge_and_service_ips_and_are_never_masqueraded() -> None:
    cni = node.cni_config(NET, WORK)
    bridge = cni["plugins"][0]  # type: ignore[index]
    assert bridge["bridge"] == "toque-x0" and bridge["ipMasq"] is False
    assert "isDefaultGateway" not in bridge  # no default route out of the machine
    assert bridge["ipam"]["routes"] == [{"dst": node.SERVICE_CIDR, "gw": "10.99.0.1"}]
    assert bridge["ipam"]["dataDir"] == "/w/node/cni/ipam"


def test_the_kubelet_listens_on_the_bridge_and_leaves_the_hosts_iptables_alone() -> None:
    ports = {"kubelet": 1, "healthz": 2, "proxy-healthz": 3, "proxy-metrics": 4}
    kubelet = node.kubelet_config(CONFIG, WORK, ports)
    assert kubelet["address"] == "10.99.0.1"
    assert kubelet["healthzBindAddress"] == "127.0.0.1"
    assert kubelet["makeIPTablesUtilChains"] is False
    assert kubelet["cgroupDriver"] == "cgroupfs" and kubelet["cgroupRoot"] == "/toque-n0"
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]
    assert kubelet["registerWithTaints"] == list(CONFIG.taints)
    assert kubelet["podLogsDir"] == "/w/node/pod-logs"


def test_kube_proxy_uses_nftables_and_opens_node_ports_on_the_bridge_only() -> None:
    ports = {"kubelet": 1, "healthz": 2, "proxy-healthz": 3, "proxy-metrics": 4}
    proxy = node.kube_proxy_config(CONFIG, ports)
    assert proxy["mode"] == "nftables"
    assert proxy["nodePortAddresses"] == ["10.99.0.1/32"]
    assert proxy["conntrack"] == {"maxPerCore": 0, "min": 0}


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("127.0.0.1:5000/toque:abc", ("127.0.0.1:5000/toque", "abc")),
        ("registry.example.com/team/toque:0.1.0", ("registry.example.com/team/toque", "0.1.0")),
    ],
)
def test_image_references_split_at_the_tag_not_the_registry_port(
    reference: str, parts: tuple[str, str]
) -> None:
    assert install.split_image(reference) == parts


@pytest.mark.parametrize("reference", ["127.0.0.1:5000/toque", "toque"])
def test_an_image_reference_without_a_tag_is_refused(reference: str) -> None:
    with pytest.raises(ValueError, match="no tag"):
        install.split_image(reference)


def test_a_workdir_too_long_for_the_kubelets_sockets_is_refused_before_anything_starts(
    tmp_path: pathlib.Path,
) -> None:
    deep = tmp_path / ("d" * 90)
    real = node.RealNode(node.NodeConfig.__new__(node.NodeConfig), deep, {}, lambda: 0)
    with pytest.raises(node.NodeError, match="too long for the kubelet's unix sockets"):
        real.start()
    assert not deep.exists()
