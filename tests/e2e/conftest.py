"""End-to-end fixtures: a real control plane, Toque's CRDs and RBAC installed with the real
``helm`` and ``kubectl``, and the operator running as its least-privileged ServiceAccount."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import pytest

from toque.testing import cluster as local
from toque.testing import operator_process

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalCluster]:
    c = local.LocalCluster(workdir=tmp_path_factory.mktemp("cluster"))
    c.start()
    try:
        c.install_crds(ROOT / "crds")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def operator_identity(cluster: local.LocalCluster) -> pathlib.Path:
    """A kubeconfig for the chart's ServiceAccount, bound by the chart's RBAC only."""
    return operator_process.install_rbac_and_kubeconfig(cluster, ROOT / "helm" / "toque")


@pytest.fixture(scope="session")
def operator(
    cluster: local.LocalCluster, operator_identity: pathlib.Path
) -> Iterator[operator_process.Operator]:
    op = operator_process.Operator(cluster, operator_identity, runtime_image="toque-runtime:test")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def namespace(cluster: local.LocalCluster) -> Iterator[str]:
    """A fresh namespace with the restricted Pod Security Standard enforced."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
