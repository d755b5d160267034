"""The chart lints, its schema refuses bad values, and it installs with the real helm."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from toque.local import cluster as local

CHART = pathlib.Path(__file__).resolve().parents[2] / "helm" / "toque"


def test_chart_lints_strictly(cluster: local.LocalCluster) -> None:
    out = cluster.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("operator.replicas=10", "replicas"),
        ("operator.replicas=-1", "replicas"),
        ("operator.leaderElection.enabled=false", "needs operator.leaderElection.enabled"),
        ("operator.leaderElection.renewDeadline=15", "retryPeriod < renewDeadline < leaseDuration"),
        ("operator.leaderElection.leaseDuration=fast", "leaseDuration"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.watchNamespaces[0]=Bad_NS", "watchNamespaces"),
        ("unknownKey=1", "unknownKey"),
    ],
)
def test_values_schema_refuses_bad_values(
    cluster: local.LocalCluster, flag: str, message: str
) -> None:
    with pytest.raises(local.ClusterError) as info:
        cluster.helm("template", "toque", str(CHART), "--set", flag)
    assert message in str(info.value)


def test_namespaced_mode_renders_roles_not_clusterroles(cluster: local.LocalCluster) -> None:
    out = cluster.helm(
        "template",
        "toque",
        str(CHART),
        "--namespace",
        "toque-system",
        "--set",
        "operator.watchNamespaces={team-a,team-b}",
    )
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert "ClusterRole" not in [d["kind"] for d in docs]
    # One Role per watched namespace, and the election's (its Lease, its own pods) at home.
    roles = sorted(
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"
    )
    assert roles == [
        ("team-a", "toque-operator"),
        ("team-b", "toque-operator"),
        ("toque-system", "toque-operator-election"),
    ]
    deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--namespace=team-a" in command and "--namespace=team-b" in command


def test_chart_installs_and_its_pod_meets_restricted(cluster: local.LocalCluster) -> None:
    ns = "toque-helm"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    cluster.helm(
        "install",
        "toque-chart",
        str(CHART),
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "90s",
        "--set",
        "metrics.serviceMonitor.enabled=false",
    )
    deployment = json.loads(
        cluster.kubectl("get", "deployment", "toque-chart-operator", "-n", ns, "-o", "json").stdout
    )
    # Two replicas, both Ready (kwok's simulated kubelet): one leads, one stands by.
    assert deployment["status"].get("readyReplicas") == 2
    can = cluster.kubectl(
        "auth",
        "can-i",
        "delete",
        "jobs.batch",
        "-n",
        "default",
        f"--as=system:serviceaccount:{ns}:toque-chart-operator",
        check=False,
    )
    assert can.stdout.strip() == "no"  # least privilege: the operator never deletes Jobs
    can = cluster.kubectl(
        "auth",
        "can-i",
        "create",
        "jobs.batch",
        "-n",
        "default",
        f"--as=system:serviceaccount:{ns}:toque-chart-operator",
        check=False,
    )
    assert can.stdout.strip() == "yes"
    sa = f"--as=system:serviceaccount:{ns}:toque-chart-operator"
    own = ("update", "leases.coordination.k8s.io/toque-chart-operator", "-n", ns, sa)
    other = ("update", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system", sa)
    assert cluster.kubectl("auth", "can-i", *own, check=False).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", *other, check=False).stdout.strip() == "no"
    cluster.helm("uninstall", "toque-chart", "--namespace", ns, "--wait")
