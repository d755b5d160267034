"""The operator installed in namespaced mode (``operator.watchNamespaces``) runs the example
end to end in the namespaces it was given, with one Role per namespace and no ClusterRole,
and can neither see nor touch a third namespace."""

from __future__ import annotations

import copy
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import make_namespace
from tests.e2e.helpers import apply, get, wait
from tests.e2e.test_training import EXAMPLE, code_ref, dataset_ref, on_local_node, wait_phase
from toque.clients import mlflow_registry
from toque.local import cluster as local
from toque.local import install, services

ROOT = pathlib.Path(__file__).resolve().parents[2]
RELEASE = "toque-scoped"
RELEASE_NAMESPACE = "toque-scoped-system"
ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}-operator"

__all__ = ["code_ref", "dataset_ref"]  # module fixtures pushing the example's code and data


@pytest.fixture(scope="module")
def scoped(cluster: local.LocalCluster, minio: services.Minio) -> Iterator[tuple[str, str, str]]:
    """Two watched namespaces and a third one the operator must not reach."""
    names = tuple(make_namespace(cluster, minio) for _ in range(3))
    yield names  # type: ignore[misc]
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def scoped_operator(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    scoped: tuple[str, str, str],
) -> Iterator[install.OperatorRelease]:
    """The cluster-wide session operator steps aside; a second release of the chart,
    installed with ``operator.watchNamespaces``, takes its place."""
    values = copy.deepcopy(operator.values)
    values["operator"]["watchNamespaces"] = list(scoped[:2])
    operator.stop()
    op = install.OperatorRelease(
        cluster, operator.image, values, release=RELEASE, namespace=RELEASE_NAMESPACE
    )
    try:
        op.install()
        yield op
    finally:
        op.uninstall()
        operator.start()


def can(cluster: local.LocalCluster, verb: str, what: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    out = cluster.kubectl("auth", "can-i", verb, what, *where, f"--as={ACCOUNT}", check=False)
    return out.stdout.strip() == "yes"


def test_the_scoped_chart_grants_roles_in_the_watched_namespaces_only(
    cluster: local.LocalCluster, scoped: tuple[str, str, str], scoped_operator: Any
) -> None:
    a, b, outside = scoped
    for ns in (a, b):
        assert can(cluster, "create", "jobs.batch", ns)
        assert can(cluster, "patch", "pods", ns)
        assert can(cluster, "create", "deployments.apps", ns)
    assert not can(cluster, "create", "jobs.batch", outside)
    assert not can(cluster, "patch", "pods", outside)
    assert not can(cluster, "create", "deployments.apps", outside)
    assert not can(cluster, "list", "pods", None)  # no cluster-wide read either
    assert not can(cluster, "list", "secrets", a)  # credentials stay out of reach
    roles = cluster.kubectl_json("get", "clusterrolebindings", "-o", "json")["items"]
    assert not [r for r in roles if r["metadata"]["name"].startswith(RELEASE)]


def test_the_scoped_operator_runs_the_example_and_ignores_a_third_namespace(
    cluster: local.LocalCluster,
    scoped: tuple[str, str, str],
    scoped_operator: install.OperatorRelease,
    dataset_ref: str,
    mlflow_server: services.Mlflow,
) -> None:
    a, b, outside = scoped
    name = EXAMPLE["metadata"]["name"]
    quick = {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "quick"},
        "spec": {
            "command": ["python", "-c", "print('done')"],
            "backoffLimit": 0,
            "nodeSelector": {"toque.dev/real-node": "true"},
            "tolerations": [
                {"key": "toque.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    }
    apply(cluster, a, on_local_node(EXAMPLE))
    apply(cluster, b, quick)
    apply(cluster, outside, copy.deepcopy(quick))

    done = wait_phase(cluster, a, name, {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    mv_name = done["status"]["modelVersion"]

    def promoted() -> dict[str, Any] | None:
        obj = get(cluster, a, "modelversion", mv_name)
        return obj if (obj or {}).get("status", {}).get("phase") == "Promoted" else None

    live = wait(cluster, promoted, "the example's ModelVersion to go live", 180)["status"]
    registry = mlflow_registry.Registry(mlflow_server.uri)
    registered = f"{a}.breast-cancer-classifier"
    assert registry.alias_version(registered, "champion") == live["registry"]["version"]
    assert wait_phase(cluster, b, "quick", {"Succeeded", "Failed"}, 120)["status"]["phase"] == (
        "Succeeded"
    )

    # Outside its namespaces: no status, no Job, no Event from the operator, ever.
    time.sleep(5)
    untouched = get(cluster, outside, "trainingjob", "quick")
    assert "status" not in untouched, untouched.get("status")
    assert get(cluster, outside, "jobs")["items"] == []
