"""End-to-end fixtures: a real control plane, Toque's CRDs and RBAC installed with the real
``helm`` and ``kubectl``, and the operator running as its least-privileged ServiceAccount."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import pytest

from toque.local import cluster as local
from toque.local import operator_process, services

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


CREDENTIALS_SECRET = "toque-s3"
# The operator reaches MLflow through a URL with credentials in it, as many users configure
# it; test_credentials checks that they never surface in status, Events, logs or tags.
MLFLOW_USER = "toque-e2e"
MLFLOW_PASSWORD = "pw-must-not-leak-7f3a9c"


def with_credentials(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{MLFLOW_USER}:{MLFLOW_PASSWORD}@{rest}"


@pytest.fixture(scope="session")
def operator(
    cluster: local.LocalCluster,
    operator_identity: pathlib.Path,
    minio: services.Minio,
    mlflow_server: services.Mlflow,
    prometheus: services.Prometheus,
) -> Iterator[operator_process.Operator]:
    """The operator, configured as the chart would: MLflow, S3, the credentials Secret and
    the Prometheus that canary analysis asks (short windows: it scrapes every second)."""
    settings = {
        "TOQUE_MLFLOW_TRACKING_URI": with_credentials(mlflow_server.uri),
        "TOQUE_S3_ENDPOINT": minio.endpoint,
        "TOQUE_DATA_BUCKET": "toque-data",
        "TOQUE_CREDENTIALS_SECRET": CREDENTIALS_SECRET,
        "TOQUE_PROMETHEUS_URL": prometheus.url,
        "TOQUE_ANALYSIS_MIN_WINDOW": "5",
    }
    op = operator_process.Operator(
        cluster, operator_identity, runtime_image="toque-runtime:test", env=settings
    )
    op.start()
    try:
        yield op
    finally:
        op.stop()


def make_namespace(cluster: local.LocalCluster, minio: services.Minio) -> str:
    """A fresh namespace with the restricted Pod Security Standard enforced and the S3
    credentials Secret a platform team provisions for training namespaces."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        CREDENTIALS_SECRET,
        "-n",
        name,
        f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}",
    )
    return name


@pytest.fixture
def namespace(cluster: local.LocalCluster, minio: services.Minio) -> Iterator[str]:
    name = make_namespace(cluster, minio)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def second_namespace(cluster: local.LocalCluster, minio: services.Minio) -> Iterator[str]:
    name = make_namespace(cluster, minio)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, cluster: local.LocalCluster
) -> Iterator[services.Prometheus]:
    """Prometheus discovering the cluster's pods (admin kubeconfig), scraping every 1s the
    Running pods annotated ``prometheus.io/scrape: "true"`` (job ``toque-serving``; series
    labelled ``namespace``, ``pod`` and ``toque_model``). ``.url`` is the HTTP API."""
    binaries = local.find_binaries(("prometheus", "promtool"))
    server = services.Prometheus(
        workdir=tmp_path_factory.mktemp("prometheus"),
        binary=binaries["prometheus"],
        promtool=binaries["promtool"],
        kubeconfig=cluster.kubeconfig,
        scrape_interval="1s",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
