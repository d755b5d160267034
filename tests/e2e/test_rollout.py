"""Registry → live traffic, step by step, with real serving pods and a real Prometheus.

Three versions of one model, logged to the session's MLflow: v1 is promoted without a
canary; v2 canaries through 10 → 50 → 100 % and is promoted, surviving an operator crash
in the middle; v3, which fails on a share of its inputs, is queued behind v2 and then
rolled back by its analysis. Live traffic goes through the model Service's EndpointSlices,
as kube-proxy would send it; every request's answer is recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import cloudpickle
import kubernetes
import mlflow
import pytest
import requests
import skops.io
from mlflow.models import infer_signature
from sklearn import datasets, ensemble

from tests.e2e import flaky_model
from tests.e2e.helpers import apply, events, get, wait
from toque.api import modelversion as mv
from toque.clients import mlflow_registry
from toque.core import digest
from toque.local import cluster as local
from toque.local import install, services
from toque.resources import serving
from toque.serving import bins

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclasses.dataclass(frozen=True)
class Logged:
    runs: dict[str, str]
    columns: list[str]
    rows: list[list[float]]


@pytest.fixture(scope="module")
def logged(mlflow_server: services.Mlflow, minio: services.Minio) -> Logged:
    """Three runs, each with a model and its digest tag, as the trainer leaves them."""
    frame = datasets.load_breast_cancer(as_frame=True)
    x, y = frame.data, frame.target
    column = "mean radius"
    threshold = float(x[column].quantile(0.6))  # v3 fails on ~40 % of rows
    runs: dict[str, str] = {}
    # MLflow's own deprecation noise while logging is not what this test is about.
    with (
        environment({**minio.env(), "MLFLOW_TRACKING_URI": mlflow_server.uri}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        mlflow.set_experiment("e2e-rollout")
        for key, seed in (("v1", 1), ("v2", 2), ("v3", 3)):
            forest = ensemble.RandomForestClassifier(n_estimators=10, random_state=seed)
            forest.fit(x, y)
            signature = infer_signature(x, forest.predict(x))
            with mlflow.start_run() as run:
                if key == "v3":
                    cloudpickle.register_pickle_by_value(flaky_model)
                    info = mlflow.pyfunc.log_model(
                        name="model",
                        python_model=flaky_model.FailsAboveThreshold(forest, column, threshold),
                        signature=signature,
                    )
                else:
                    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(forest))
                    info = mlflow.sklearn.log_model(
                        forest,
                        name="model",
                        signature=signature,
                        skops_trusted_types=trusted,
                    )
                with tempfile.TemporaryDirectory() as tmp:
                    local_dir = mlflow.artifacts.download_artifacts(
                        artifact_uri=info.model_uri, dst_path=tmp
                    )
                    mlflow.set_tag(
                        "toque.model_digest", digest.model_digest(pathlib.Path(local_dir))
                    )
                    bins.log_bins(x, run.info.run_id, pathlib.Path(tmp))
                runs[key] = run.info.run_id
    return Logged(runs, list(x.columns), x.to_numpy().tolist())


def modelversion(name: str, model: str, run_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "source": {"runId": run_id},
            "alias": "champion",
            "serving": {
                "replicas": 2,
                # The node agent's node runs pods as real processes.
                "nodeSelector": {"toque.dev/real-node": "true"},
                "tolerations": [
                    {"key": "toque.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
            "rollout": {
                "steps": STEPS,
                "analysis": {
                    "interval": "3s",
                    "builtins": {
                        "maxErrorRate": 0.05,
                        "maxP99LatencyMs": 2000,
                        "maxPredictionShift": 0.5,
                    },
                },
            },
        },
    }


@dataclasses.dataclass
class Answer:
    at: float
    ip: str
    status: int


class Traffic(threading.Thread):
    """Sends one request at a time to a ready endpoint of the Service, round robin, reading
    the EndpointSlices a few times a second (as kube-proxy follows them)."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str, service: str, data: Logged):
        super().__init__(daemon=True)
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.api = kubernetes.client.DiscoveryV1Api(client)
        self.namespace = namespace
        self.service = service
        self.data = data
        self.answers: list[Answer] = []
        self.stopping = threading.Event()
        self.endpoints: list[str] = []

    def refresh(self) -> list[str]:
        slices = self.api.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={self.service}"
        )
        out = []
        for s in slices.items:
            port = next((p.port for p in s.ports or [] if p.name == "http"), None)
            for e in s.endpoints or []:
                if port and e.conditions and e.conditions.ready:
                    out += [f"{a}:{port}" for a in e.addresses]
        return sorted(out)

    def run(self) -> None:
        session = requests.Session()
        refreshed, turn = 0.0, 0
        while not self.stopping.is_set():
            if time.monotonic() - refreshed > 0.2:
                self.endpoints = self.refresh()
                refreshed = time.monotonic()
            if not self.endpoints:
                time.sleep(0.1)
                continue
            target = self.endpoints[turn % len(self.endpoints)]
            row = self.data.rows[turn % len(self.data.rows)]
            turn += 1
            body = {"dataframe_split": {"columns": self.data.columns, "data": [row]}}
            try:
                status = session.post(f"http://{target}/invocations", json=body, timeout=10)
                code = status.status_code
            except requests.RequestException:
                code = 0
            self.answers.append(Answer(time.monotonic(), target.split(":")[0], code))
            time.sleep(0.02)

    def failures_since(self, since: float) -> list[Answer]:
        return [a for a in self.answers if a.at >= since and a.status != 200]

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)


def status(cluster: local.LocalCluster, ns: str, name: str) -> dict[str, Any]:
    obj = get(cluster, ns, "modelversion", name)
    return (obj or {}).get("status") or {}


def wait_phase(
    cluster: local.LocalCluster, ns: str, name: str, phase: str, timeout: float = 180
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        s = status(cluster, ns, name)
        if s.get("phase") in ("Failed",) and phase != "Failed":
            raise AssertionError(f"{name} failed: {s}")
        return s if s.get("phase") == phase else None

    try:
        result: dict[str, Any] = wait(cluster, reached, f"{name} to reach {phase}", timeout)
    except local.ClusterError as error:
        raise AssertionError(f"{error}\nlast status: {status(cluster, ns, name)}") from error
    return result


def pod_ips(cluster: local.LocalCluster, ns: str, mv: str) -> set[str]:
    pods = get(cluster, ns, "pods", "-l", f"toque.dev/modelversion={mv}") or {"items": []}
    return {p["status"].get("podIP") for p in pods["items"] if p["status"].get("podIP")}


def test_canary_promotes_a_good_version_and_rolls_back_a_broken_one(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    namespace: str,
    mlflow_server: services.Mlflow,
    logged: Logged,
) -> None:
    ns = namespace
    model = f"rollout-{ns}"
    registry = mlflow_registry.Registry(mlflow_server.uri)
    registered = f"{ns}.{model}"  # registry names are per namespace
    names = {key: f"{model}-{key}" for key in ("v1", "v2", "v3")}

    # v1: the first version of a model is promoted without a canary.
    apply(cluster, ns, modelversion(names["v1"], model, logged.runs["v1"]))
    v1 = wait_phase(cluster, ns, names["v1"], "Promoted")
    assert v1["registry"] == {"name": registered, "version": "1", "alias": "champion"}
    assert registry.alias_version(registered, "champion") == "1"
    lineage = registry.version_tags(registered, "1")
    assert lineage["toque.model_digest"] == v1["modelDigest"]
    assert lineage["toque.modelversion"] == f"{ns}/{names['v1']}"
    service = get(cluster, ns, "service", model)
    assert service["spec"]["selector"]["toque.dev/traffic"] == "on"

    traffic = Traffic(cluster.kubeconfig, ns, model, logged)
    traffic.start()
    try:
        wait(cluster, lambda: len(traffic.answers) > 20, "traffic to flow", 60)
        assert not traffic.failures_since(0), traffic.failures_since(0)[:5]

        # v2 and v3 arrive together: v3 waits for v2's rollout and says so.
        apply(cluster, ns, modelversion(names["v2"], model, logged.runs["v2"]))
        time.sleep(1.1)  # a later creationTimestamp, so the queue order is certain
        apply(cluster, ns, modelversion(names["v3"], model, logged.runs["v3"]))
        queued = wait_phase(cluster, ns, names["v3"], "Pending", timeout=60)
        assert names["v2"] in queued["message"]

        # v2 walks through its steps; the operator is killed at 50 % and resumes there.
        weights: list[int] = []

        def at_half() -> dict[str, Any] | None:
            s = status(cluster, ns, names["v2"])
            if s.get("canaryWeight") is not None and s["canaryWeight"] not in weights:
                weights.append(s["canaryWeight"])
            return s if s.get("currentStep") == 1 else None

        before = wait(cluster, at_half, "v2 to reach the 50 % step", 180)
        operator.kill()
        time.sleep(2)
        restarted = dt.datetime.now(dt.UTC)
        operator.start()
        seen_after: list[tuple[int | None, int | None]] = []

        def promoted_after_restart() -> dict[str, Any] | None:
            s = status(cluster, ns, names["v2"])
            seen_after.append((s.get("currentStep"), s.get("canaryWeight")))
            if s.get("phase") in ("RolledBack", "Failed", "Aborted"):
                raise AssertionError(f"v2 ended {s['phase']}: {s.get('message')}")
            return s if s.get("phase") == "Promoted" else None

        v2 = wait(cluster, promoted_after_restart, "v2 promoted by the restarted operator", 180)
        assert 10 in weights and 50 in weights, weights
        # What the restarted operator did: its analysis runs are at the step it was killed at
        # or later, never back at step 0, and the weight never fell back to 10 %.
        resumed = [
            r for r in v2["analysisRuns"] if dt.datetime.fromisoformat(r["time"]) > restarted
        ]
        assert resumed, "the restarted operator ran no analysis"
        assert min(r["step"] for r in resumed) >= before["currentStep"], resumed
        assert all(step is None or step >= before["currentStep"] for step, _ in seen_after)
        assert 10 not in {w for _, w in seen_after}, seen_after
        assert v2["stepsHash"] == before["stepsHash"]
        measured = {r["check"] for r in v2["analysisRuns"] if r.get("passed") is True}
        assert measured == {"error-rate", "p99-latency", "prediction-shift"}, v2["analysisRuns"]
        assert v2["previous"] == names["v1"]
        assert registry.alias_version(registered, "champion") == v2["registry"]["version"]
        v1 = status(cluster, ns, names["v1"])
        assert v1["phase"] == "Superseded"
        v1_deployment = get(cluster, ns, "deployment", f"{names['v1']}-server")
        assert v1_deployment["spec"]["replicas"] == 2  # warm for an instant rollback
        served_by_v2 = {a.ip for a in traffic.answers} & pod_ips(cluster, ns, names["v2"])
        assert served_by_v2, "v2 took no traffic during its canary"
        assert not traffic.failures_since(0), traffic.failures_since(0)[:5]

        # v3 now starts, fails its error-rate check and is rolled back by itself.
        v3_ips = wait(cluster, lambda: pod_ips(cluster, ns, names["v3"]), "v3's canary pods", 120)
        v3 = wait_phase(cluster, ns, names["v3"], "RolledBack")
        analysis = next(c for c in v3["conditions"] if c["type"] == "AnalysisPassed")
        assert analysis["status"] == "False" and "error-rate" in analysis["message"]
        assert any(e["reason"] == "RolledBack" for e in events(cluster, ns, names["v3"]))
        assert registry.alias_version(registered, "champion") == v2["registry"]["version"]
        assert status(cluster, ns, names["v2"])["phase"] == "Promoted"
        failed_on_v3 = [a for a in traffic.failures_since(0) if a.ip in v3_ips]
        assert failed_on_v3, "v3 never got traffic, so the rollback proved nothing"
        assert {a.ip for a in traffic.failures_since(0)} <= v3_ips

        # After the rollback no request fails.
        wait(
            cluster,
            lambda: not {e.split(":")[0] for e in traffic.refresh()} & v3_ips,
            "v3's pods to leave the endpoints",
            30,
        )
        settled = time.monotonic()
        count = len(traffic.answers)
        wait(cluster, lambda: len(traffic.answers) > count + 100, "100 more requests", 60)
        assert not traffic.failures_since(settled), traffic.failures_since(settled)[:5]
        v3_deployment = get(cluster, ns, "deployment", f"{names['v3']}-server")
        assert v3_deployment["spec"]["replicas"] == 0

        # A rollback by hand returns traffic to the warm v1 at once.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "toque.cli.main",
                "rollback",
                names["v2"],
                "-n",
                ns,
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--wait",
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert status(cluster, ns, names["v1"])["phase"] == "Promoted"
        assert status(cluster, ns, names["v2"])["phase"] == "RolledBack"
        assert registry.alias_version(registered, "champion") == "1"
        v1_ips = pod_ips(cluster, ns, names["v1"])
        wait(
            cluster,
            lambda: {e.split(":")[0] for e in traffic.refresh()} == v1_ips,
            "only v1's pods in the endpoints",
            30,
        )
        since = time.monotonic()
        count = len(traffic.answers)
        wait(cluster, lambda: len(traffic.answers) > count + 50, "50 more requests", 60)
        assert not traffic.failures_since(since)
    finally:
        traffic.stop()


def test_the_http_route_the_operator_builds_is_valid_gateway_api(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """Gateway API CRDs from the pinned Go module validate our HTTPRoute, weights and all."""
    cluster.install_gateway_api_crds()
    owner = serving.Owner("m-v2", namespace, "00000000-0000-0000-0000-000000000002")
    route = serving.http_route(
        namespace,
        "Fraud.Model_v2",
        [mv.HTTPRouteRef(name="public", namespace="gateways", section_name="https")],
        [("m-v1", 90), ("m-v2", 10)],
        [owner],
    )
    route["metadata"].pop("ownerReferences")  # no such ModelVersion here
    applied = cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=test",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(route),
    )
    created = json.loads(applied.stdout)
    backends = created["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("m-v1-server", 90),
        ("m-v2-server", 10),
    ]
    assert created["metadata"]["name"] == serving.service_name("Fraud.Model_v2")


def test_a_model_whose_files_do_not_match_the_record_is_never_served(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    namespace: str,
    logged: Logged,
) -> None:
    model = f"tampered-{namespace}"
    doc = modelversion(f"{model}-v1", model, logged.runs["v1"])
    doc["spec"]["source"]["modelDigest"] = "sha256:" + "0" * 64
    apply(cluster, namespace, doc)
    failed = wait_phase(cluster, namespace, f"{model}-v1", "Failed", timeout=120)
    assert "digest mismatch" in failed["message"]
    assert "sha256:" + "0" * 64 in failed["message"]
    slices = get(cluster, namespace, "endpointslices", "-l", f"kubernetes.io/service-name={model}")
    ready = [
        e
        for item in (slices or {"items": []})["items"]
        for e in item.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
    ]
    assert ready == []
    deployment = get(cluster, namespace, "deployment", f"{model}-v1-server")
    assert deployment["spec"]["replicas"] == 0


def plain_modelversion(name: str, model: str, run_id: str) -> dict[str, Any]:
    """One replica, no canary steps: goes live as soon as its pod is ready."""
    doc = modelversion(name, model, run_id)
    doc["spec"]["serving"]["replicas"] = 1
    del doc["spec"]["rollout"]
    return doc


def ready_endpoint_ips(cluster: local.LocalCluster, ns: str, service: str) -> set[str]:
    slices = get(cluster, ns, "endpointslices", "-l", f"kubernetes.io/service-name={service}")
    return {
        address
        for item in (slices or {"items": []})["items"]
        for e in item.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for address in e["addresses"]
    }


def test_the_same_model_name_in_two_namespaces_keeps_separate_registry_aliases(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    namespace: str,
    second_namespace: str,
    mlflow_server: services.Mlflow,
    logged: Logged,
) -> None:
    registry = mlflow_registry.Registry(mlflow_server.uri)
    model = "shared-name"
    # Team A promotes run v1, team B promotes run v2, under the same model name.
    apply(cluster, namespace, plain_modelversion("a-v1", model, logged.runs["v1"]))
    apply(cluster, second_namespace, plain_modelversion("b-v1", model, logged.runs["v2"]))
    a = wait_phase(cluster, namespace, "a-v1", "Promoted")
    b = wait_phase(cluster, second_namespace, "b-v1", "Promoted")
    assert a["registry"]["name"] == f"{namespace}.{model}"
    assert b["registry"]["name"] == f"{second_namespace}.{model}"
    assert registry.alias_version(f"{namespace}.{model}", "champion") == a["registry"]["version"]
    assert (
        registry.alias_version(f"{second_namespace}.{model}", "champion")
        == b["registry"]["version"]
    )
    tags_a = registry.version_tags(f"{namespace}.{model}", a["registry"]["version"])
    tags_b = registry.version_tags(f"{second_namespace}.{model}", b["registry"]["version"])
    assert tags_a["toque.modelversion"] == f"{namespace}/a-v1"
    assert tags_b["toque.modelversion"] == f"{second_namespace}/b-v1"


def test_deleting_the_live_version_hands_traffic_and_alias_to_the_warm_previous_one(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    namespace: str,
    mlflow_server: services.Mlflow,
    logged: Logged,
) -> None:
    ns = namespace
    registry = mlflow_registry.Registry(mlflow_server.uri)
    model = f"deleted-{ns}"
    apply(cluster, ns, plain_modelversion("v1", model, logged.runs["v1"]))
    wait_phase(cluster, ns, "v1", "Promoted")
    apply(cluster, ns, plain_modelversion("v2", model, logged.runs["v2"]))
    v2 = wait_phase(cluster, ns, "v2", "Promoted")
    assert status(cluster, ns, "v1")["phase"] == "Superseded"
    assert registry.alias_version(f"{ns}.{model}", "champion") == v2["registry"]["version"]
    v1_ips = pod_ips(cluster, ns, "v1")
    assert v1_ips and not ready_endpoint_ips(cluster, ns, model) & v1_ips

    cluster.kubectl("delete", "modelversion", "v2", "-n", ns, "--wait=true", "--timeout=60s")
    v1 = status(cluster, ns, "v1")
    assert v1["phase"] == "Promoted", v1
    assert v1["registry"]["alias"] == "champion"
    assert registry.alias_version(f"{ns}.{model}", "champion") == v1["registry"]["version"]
    # The warm v1 was admitted before v2 went away: its pods take the traffic.
    wait(cluster, lambda: ready_endpoint_ips(cluster, ns, model) == v1_ips, "v1 in endpoints", 30)
    assert any(e["reason"] == "Restored" for e in events(cluster, ns, "v1"))

    # Deleting the last version removes the alias instead of leaving it on a dead version.
    cluster.kubectl("delete", "modelversion", "v1", "-n", ns, "--wait=true", "--timeout=60s")
    assert registry.alias_version(f"{ns}.{model}", "champion") is None
