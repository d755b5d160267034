"""The main example end to end on a kind cluster (run with `make test-kind`; see docs/kind.md).

The session fixture creates a one-node kind cluster through pytest-kind's ``KindCluster``
(with the kind binary built by ``hack/build-kind-node.sh kind``, and kubectl from
``hack/build-tools.sh``). kind picks its provider from ``KIND_EXPERIMENTAL_PROVIDER``, which
pytest-kind passes through: the Makefile sets it to ``podman`` where no Docker engine answers.
With podman the node image is the one ``hack/build-kind-node.sh`` builds here
(``TOQUE_KIND_NODE_IMAGE``; kind's ``kindest/node`` cannot be pulled), and the fixture makes
the host changes that kind needs on such a host and undoes them afterwards: ``/lib/modules``
(kind always bind-mounts it), a ``CONTAINERS_CONF`` with ``default_ulimits`` (podman's
default nofile limit cannot be set without CAP_SYS_RESOURCE), and a kind config with
``disableDefaultCNI`` (the image has a bridge CNI config instead of kindnetd) and containerd's
``restrict_oom_score_adj``. pytest-kind's own ``kind_cluster`` fixture is not used because it
cannot pass a kind config; its class is.

Toque's image (``hack/build-image.sh``, or ``docker build`` with Docker) goes into the node
with ``kind load image-archive``; MinIO and the MLflow server run on the host, bound to the
gateway address of kind's network, where pods reach them; ``helm install`` installs Toque's
chart with that image. Then the example runs as ``make up`` runs it: the breast-cancer
dataset and the example's code are pushed, ``examples/trainingjob.yaml`` is applied in a
restricted namespace, the TrainingJob must end Succeeded, its ModelVersion Promoted, and one
prediction must come back through ``kubectl port-forward`` on 127.0.0.1. Teardown deletes
the cluster, kind's network and ``/lib/modules`` when this run created them, and stops
MinIO and MLflow.
"""

from __future__ import annotations

import contextlib
import csv
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from toque.local import cluster as local
from toque.local import services
from toque.resources import serving

pytestmark = pytest.mark.kind
ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = "toque-kind"
NAMESPACE = "toque-demo"
CREDENTIALS_SECRET = "toque-s3"
DATA_BUCKET = "toque-data"
PROVIDER = os.environ.get("KIND_EXPERIMENTAL_PROVIDER") or "docker"
# Podman's rootful default nofile limit is above this host's hard limit (20000), and kind
# passes no --ulimit: `runc create failed: ... error setting rlimit type 7: operation not
# permitted`.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]\n'
# The node image has no kindnetd (it cannot be pulled): a baked bridge CNI config instead.
# Without CAP_SYS_RESOURCE runc cannot lower a sandbox's oom_score_adj to -998:
# `runc create failed: ... can't get final child's PID from pipe: EOF`.
PODMAN_KIND_CONFIG = {
    "kind": "Cluster",
    "apiVersion": "kind.x-k8s.io/v1alpha4",
    "networking": {"disableDefaultCNI": True},
    "containerdConfigPatches": [
        '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true'
    ],
}


def say(text: str) -> None:
    print(f"[test-kind] {text}", flush=True)


def run(*argv: str, **kwargs: Any) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr}")
    return str(out.stdout)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def gateway_of_kind_network(runtime: str) -> str:
    """The IPv4 gateway of kind's network: the host's address on the node's network."""
    info = json.loads(run(runtime, "network", "inspect", "kind"))[0]
    subnets = info.get("subnets") or [  # podman (netavark) / docker
        {"gateway": c.get("Gateway", "")} for c in info.get("IPAM", {}).get("Config") or []
    ]
    for subnet in subnets:
        gateway = str(subnet.get("gateway", ""))
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gateway):
            return gateway
    raise AssertionError(f"kind's network has no IPv4 gateway: {subnets}")


def nft_tables() -> list[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.startswith("table ")]


@contextlib.contextmanager
def host_prepared(runtime: str, workdir: pathlib.Path) -> Iterator[None]:
    """The host changes kind needs here, undone on exit (only what this run created)."""
    made_modules = False
    network_existed = subprocess.run([runtime, "network", "inspect", "kind"], capture_output=True)
    had_network = network_existed.returncode == 0
    saved = os.environ.get("CONTAINERS_CONF")
    tables_before = nft_tables()
    try:
        # kind always adds `--volume /lib/modules:/lib/modules:ro`; without the directory:
        # `Error: statfs /lib/modules: no such file or directory`.
        if not os.path.exists("/lib/modules"):
            os.mkdir("/lib/modules")
            made_modules = True
        if runtime == "podman":
            conf = workdir / "containers.conf"
            conf.write_text(CONTAINERS_CONF)
            os.environ["CONTAINERS_CONF"] = str(conf)
        yield
    finally:
        # kind deletes the node and its volume, not the network it created.
        if not had_network:
            subprocess.run([runtime, "network", "rm", "kind"], capture_output=True)
            # netavark keeps its base chains (NETAVARK_FORWARD, NETAVARK-HOSTPORT-*) after its
            # last network goes; the tables iptables-nft made for them go too when they are
            # new, so the host's firewall is as it was.
            for table in set(nft_tables()) - set(tables_before):
                family, name = table.split()[1:3]
                if name in ("nat", "filter"):
                    subprocess.run(["nft", "delete", "table", family, name], capture_output=True)
        if made_modules:
            with contextlib.suppress(OSError):
                os.rmdir("/lib/modules")
        if runtime == "podman":
            if saved is None:
                os.environ.pop("CONTAINERS_CONF", None)
            else:
                os.environ["CONTAINERS_CONF"] = saved


def toque_image(runtime: str) -> str:
    image = os.environ.get("TOQUE_KIND_IMAGE")
    if image:
        return image
    if runtime == "podman":
        out = run("bash", str(ROOT / "hack" / "build-image.sh"))
        return out.strip().splitlines()[-1]
    image = "localhost/toque:kind-test"
    subprocess.run(["docker", "build", "-t", image, str(ROOT)], check=True)
    return image


class Kind:
    """The running cluster, with kubectl and helm bound to its kubeconfig."""

    def __init__(
        self, cluster: Any, binaries: dict[str, pathlib.Path], image: str, runtime: str
    ) -> None:
        self.cluster = cluster
        self.binaries = binaries
        self.image = image
        self.runtime = runtime
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)}

    def kubectl(self, *args: str, **kwargs: Any) -> str:
        return run(str(self.binaries["kubectl"]), *args, env=self.env, **kwargs)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, *args: str) -> str:
        return run(str(self.binaries["helm"]), *args, env=self.env)


@pytest.fixture(scope="session")
def workdir() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="toque-kind-") as path:
        yield pathlib.Path(path)


@pytest.fixture(scope="session")
def kind(workdir: pathlib.Path) -> Iterator[Kind]:
    # Imported here: `make test` collects this module without the `kind` extra installed.
    from pytest_kind import KindCluster  # type: ignore[import-untyped]

    runtime = "podman" if PROVIDER == "podman" else "docker"
    binaries = local.find_binaries(("kubectl", "helm", "minio"))
    kind_bin = (
        os.environ.get("TOQUE_KIND_BIN")
        or run("bash", str(ROOT / "hack" / "build-kind-node.sh"), "kind").strip().splitlines()[-1]
    )
    node_image = os.environ.get("TOQUE_KIND_NODE_IMAGE") or None
    if runtime == "podman" and not node_image:
        node_image = run("bash", str(ROOT / "hack" / "build-kind-node.sh")).strip().splitlines()[-1]
    image = toque_image(runtime)
    config = None
    if runtime == "podman":
        config = workdir / "kind.yaml"
        config.write_text(yaml.safe_dump(PODMAN_KIND_CONFIG))
    with host_prepared(runtime, workdir):
        # KindCluster keeps its files in ./.pytest-kind/<name>: made under the workdir.
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            cluster = KindCluster(
                CLUSTER,
                kubeconfig=workdir / "kubeconfig",
                image=node_image,
                kind_path=pathlib.Path(kind_bin),
                kubectl_path=binaries["kubectl"],
            )
        finally:
            os.chdir(cwd)
        started = time.monotonic()
        try:
            cluster.create(config_file=config)
            say(f"kind create cluster ({PROVIDER}): {time.monotonic() - started:.0f}s")
            k = Kind(cluster, binaries, image, runtime)
            k.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=180s")
            # Two cores: kubeadm's control plane requests 950m of CPU, the example's training
            # pod 1 CPU and the operator 100m; one CoreDNS replica (100m) makes room.
            k.kubectl("scale", "deployment", "coredns", "-n", "kube-system", "--replicas=1")
            archive = workdir / "toque-image.tar"
            t = time.monotonic()
            run(runtime, "save", "-o", str(archive), image)
            run(kind_bin, "load", "image-archive", str(archive), "--name", CLUSTER)
            archive.unlink()
            say(f"{image} loaded into the node: {time.monotonic() - t:.0f}s")
            yield k
        finally:
            cluster.delete()


@pytest.fixture(scope="session")
def stores(kind: Kind, workdir: pathlib.Path) -> Iterator[tuple[services.Minio, services.Mlflow]]:
    """MinIO and MLflow on the host, on kind's network gateway (where the pods reach them)."""
    host = gateway_of_kind_network(kind.runtime)
    minio = services.Minio(workdir / "minio", kind.binaries["minio"], host=host)
    mlflow = services.Mlflow(workdir / "mlflow", minio)
    try:
        minio.start()
        mlflow.start()
        say(f"MinIO {minio.endpoint}, MLflow {mlflow.uri}")
        yield minio, mlflow
    finally:
        mlflow.stop()
        minio.stop()


@pytest.fixture(scope="session")
def toque(
    kind: Kind, stores: tuple[services.Minio, services.Mlflow], workdir: pathlib.Path
) -> Kind:
    minio, mlflow = stores
    repository, _, tag = kind.image.rpartition(":")
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "mlflow": {"trackingUri": mlflow.uri},
        "storage": {
            "endpoint": minio.endpoint,
            "dataBucket": DATA_BUCKET,
            "credentialsSecret": CREDENTIALS_SECRET,
        },
        "prometheus": {"url": ""},
        # One replica (still elected through the Lease): a standby's 100m would not leave the
        # training pod its CPU on two cores.
        "operator": {"replicas": 1},
    }
    path = workdir / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    t = time.monotonic()
    kind.helm(
        "install", "toque", str(ROOT / "helm" / "toque"), "--namespace", "toque-system",
        "--create-namespace", "-f", str(path), "--wait", "--timeout=5m",
    )  # fmt: skip
    say(f"helm install toque: {time.monotonic() - t:.0f}s")
    return kind


def get_or_none(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return json.loads(reply.read())
    except (OSError, http.client.HTTPException):
        return None


@contextlib.contextmanager
def port_forward(kind: Kind, target: str, port: int) -> Iterator[int]:
    """``kubectl port-forward`` on 127.0.0.1; yields the local port it chose."""
    proc = subprocess.Popen(
        [str(kind.binaries["kubectl"]), "port-forward", "--address", "127.0.0.1", "-n",
         NAMESPACE, target, f":{port}"],
        env=kind.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            raise AssertionError(f"kubectl port-forward printed {line!r}, not its address")
        yield int(found.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.timeout(1800)
def test_the_example_trains_promotes_and_serves_on_kind(
    toque: Kind, stores: tuple[services.Minio, services.Mlflow], workdir: pathlib.Path
) -> None:
    kind = toque
    minio, _ = stores
    sys.path.insert(0, str(ROOT))
    from examples.project import make_dataset

    data = make_dataset.write(workdir / "data" / "breast-cancer").parent
    say("toque data push: " + minio.push_dataset(data, "breast-cancer", DATA_BUCKET))
    code = minio.push_code(ROOT, ["examples"], "breast-cancer-code", DATA_BUCKET)
    say("toque code push: " + code)
    kind.kubectl("create", "namespace", NAMESPACE)
    kind.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    kind.kubectl(
        "create", "secret", "generic", CREDENTIALS_SECRET, "-n", NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}",
    )  # fmt: skip
    kind.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "trainingjob.yaml"))
    name = "breast-cancer-rf"
    t = time.monotonic()

    def finished() -> dict[str, Any] | None:
        obj: dict[str, Any] = kind.kubectl_json("get", "trainingjob", name, "-n", NAMESPACE)
        phase = obj.get("status", {}).get("phase")
        return obj if phase in ("Succeeded", "Failed") else None

    status = wait_for(finished, 900, f"TrainingJob {name} to finish")["status"]
    say(f"TrainingJob {name}: {status['phase']} after {time.monotonic() - t:.0f}s")
    if status["phase"] != "Succeeded":
        print(kind.kubectl("get", "trainingjob,job,pod", "-n", NAMESPACE, "-o", "wide"))
        print(kind.kubectl("describe", "pod", "-n", NAMESPACE))
    assert status["phase"] == "Succeeded", status.get("message")
    version = status.get("modelVersion")
    assert version, f"no ModelVersion: {status}"

    def promoted() -> dict[str, Any] | None:
        obj: dict[str, Any] = kind.kubectl_json("get", "modelversion", version, "-n", NAMESPACE)
        phase = obj.get("status", {}).get("phase")
        assert phase not in ("Failed", "RolledBack", "Aborted"), obj.get("status")
        return obj if phase == "Promoted" else None

    mv = wait_for(promoted, 600, f"ModelVersion {version} to be Promoted")
    say(f"ModelVersion {version}: Promoted after {time.monotonic() - t:.0f}s")
    model = str(mv["spec"]["model"])
    service = kind.kubectl_json("get", "service", serving.service_name(model), "-n", NAMESPACE)
    target = f"service/{service['metadata']['name']}"
    with port_forward(kind, target, int(service["spec"]["ports"][0]["port"])) as local_port:
        base = f"http://127.0.0.1:{local_port}"
        reply = wait_for(
            lambda: get_or_none(f"{base}/v2/models/{model}"), 60, "the model's metadata"
        )
        columns = [i["name"] for i in reply["inputs"]]
        with (data / "breast_cancer.csv").open() as handle:
            row = next(iter(csv.DictReader(handle)))
        body = {"dataframe_split": {"columns": columns, "data": [[float(row[k]) for k in columns]]}}
        request = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    say(f"POST /invocations via port-forward and {target} -> {answer} (label {row['target']})")
    predictions = answer.get("predictions") if isinstance(answer, dict) else answer
    assert predictions and len(predictions) == 1, answer
