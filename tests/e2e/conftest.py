"""End-to-end fixtures: a real control plane with a real node (containerd, kubelet, CNI) and
kwok nodes, Toque's image built from the Dockerfile and pushed to the local registry, and
Toque installed with the real ``helm install``: the operator runs as a pod from that image
under the chart's least-privileged ServiceAccount."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import pytest

from toque.local import cluster as local
from toque.local import install, node, registry, services

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, network: node.Network
) -> Iterator[local.LocalCluster]:
    """kwok's cpu-node-0/1 and gpu-node-0 (scheduling only), and real-node-0, tainted
    ``toque.dev/real-node``: pods that tolerate it run in containers there."""
    c = local.LocalCluster(workdir=tmp_path_factory.mktemp("cluster"), network=network)
    c.start()
    real = c.real_node
    try:
        c.install_crds(ROOT / "crds")
        yield c
    finally:
        c.stop()
    # Every pod the session ran was torn down with the node: an error here fails the run.
    assert real is not None and real.leftovers() == [], real.leftovers() if real else None


@pytest.fixture(scope="session")
def toque_image(cluster: local.LocalCluster) -> str:
    """Toque's image, built from the Dockerfile (cached by content) and pushed to the
    cluster's registry; the reference the real node pulls."""
    assert cluster.registry is not None
    built = registry.build_toque_image(ROOT)
    return cluster.registry.push(built, "toque:" + built.rpartition(":")[2])


CREDENTIALS_SECRET = "toque-s3"
# The operator reaches MLflow through a URL with credentials in it, as many users configure
# it; test_credentials checks that they never surface in status, Events, logs or tags.
MLFLOW_USER = "toque-e2e"
MLFLOW_PASSWORD = "pw-must-not-leak-7f3a9c"


def with_credentials(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{MLFLOW_USER}:{MLFLOW_PASSWORD}@{rest}"


def operator_values(
    minio: services.Minio, mlflow_server: services.Mlflow, prometheus: services.Prometheus
) -> dict[str, object]:
    """The chart's values for this stack: MLflow, S3, the credentials Secret and the
    Prometheus that canary analysis asks (short windows: it scrapes every second)."""
    return {
        "mlflow": {"trackingUri": with_credentials(mlflow_server.uri)},
        "storage": {
            "endpoint": minio.endpoint,
            "dataBucket": "toque-data",
            "credentialsSecret": CREDENTIALS_SECRET,
        },
        "prometheus": {"url": prometheus.url, "minAnalysisWindowSeconds": 5},
        "operator": install.on_real_node(),
    }


@pytest.fixture(scope="session")
def operator(
    cluster: local.LocalCluster,
    toque_image: str,
    minio: services.Minio,
    mlflow_server: services.Mlflow,
    prometheus: services.Prometheus,
) -> Iterator[install.OperatorRelease]:
    """``helm install toque helm/toque`` into toque-system: the operator's pod on the real
    node, from the image just built."""
    release = install.OperatorRelease(
        cluster, toque_image, operator_values(minio, mlflow_server, prometheus)
    )
    release.install()
    try:
        yield release
    finally:
        release.uninstall()


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
        host=cluster.host,
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
