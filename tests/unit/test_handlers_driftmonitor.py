"""The DriftMonitor handler's cycle with fakes for our own wrappers of the API server,
Prometheus and MLflow: what it reads, in which order it acts, how errors end a cycle; the
MLflow artifact client against a real HTTP server; the operator's toque_drift_* series."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import prometheus_client
import pytest

from toque.api import driftmonitor as dm
from toque.clients import kube, mlflow_artifacts, mlflow_registry, prometheus
from toque.drift import profile as drift_profile
from toque.drift import types as dtypes
from toque.handlers import driftmonitor as handler
from toque.handlers import metrics, runtime
from toque.reconcile import driftmonitor as decide
from toque.reconcile import driftqueries as dq
from toque.resources import pods

RUN = "a" * 32
NS = "team-a"
TARGET = dq.Target(NS, "churn", "3", 3600)


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch, as the API server applies it to status."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    pairs = [p.split("=", 1) for p in selector.split(",") if p]
    return all(labels.get(k) == v for k, v in pairs)


@dataclasses.dataclass
class FakeKube:
    """Our ``clients.kube.Kube``, holding objects by (kind, name) in one namespace."""

    objects: dict[tuple[str, str], dict[str, Any]]
    calls: list[str] = dataclasses.field(default_factory=list)
    applied: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    created: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    statuses: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    create_error: kube.ApiException | None = None

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.calls.append(f"get {kind}/{name}")
        return copy.deepcopy(self.objects.get((kind, name)))

    def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> Any:
        self.calls.append(f"list {kind} {selector}".strip())
        found = [o for (k, _), o in self.objects.items() if k == kind and matches(o, selector)]
        return copy.deepcopy(found)

    def apply(self, obj: dict[str, Any], field_manager: str = "", force: bool = False) -> Any:
        self.calls.append(f"apply {obj['kind']}/{obj['metadata']['name']}")
        self.applied.append(obj)
        return obj

    def request(
        self, method: str, path: str, body: Any = None, content_type: Any = None, query: Any = None
    ) -> Any:
        self.calls.append(f"{method} {path}")
        if method == "DELETE":
            raise kube.ApiException(status=404, reason="NotFound")
        assert method == "POST" and path.endswith("/trainingjobs")
        if self.create_error is not None:
            raise self.create_error
        self.created.append(body)
        stored = copy.deepcopy(body)
        stored["metadata"]["creationTimestamp"] = "2026-11-27T10:00:00Z"
        self.objects[("TrainingJob", body["metadata"]["name"])] = stored
        return body

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> Any:
        self.calls.append(f"status {kind}/{name}")
        self.statuses.append(status)
        obj = self.objects[(kind, name)]
        obj["status"] = merge(obj.get("status") or {}, status)
        return obj

    def event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, now: Any
    ) -> None:
        self.events.append((type_, reason, message))


class FakePrometheus:
    answers: dict[str, Any] = {}  # noqa: RUF012 - set per test through monkeypatch
    times: list[Any] = []  # noqa: RUF012

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str, time: Any = None) -> list[prometheus.Sample]:
        self.times.append(time)
        answer = self.answers.get(promql, [])
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


@dataclasses.dataclass
class FakeArtifacts:
    tracking_uri: str
    reads: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content: bytes | Exception = b""

    def read(self, run_id: str, path: str) -> bytes:
        self.reads.append((run_id, path))
        if isinstance(self.content, Exception):
            raise self.content
        return self.content


def reference_profile() -> dtypes.Profile:
    features = {
        name: dtypes.FeatureProfile(
            name, "numeric", rows=2000, missing=0, counts=[500] * 4, edges=[1.0, 2.0, 3.0], std=1.0
        )
        for name in ("x", "y")
    }
    features["plan"] = dtypes.FeatureProfile(
        "plan", "categorical", rows=2000, missing=0, counts=[1000, 1000, 0], categories=["a", "b"]
    )
    return dtypes.Profile(features=features, rows=2000, source=f"run:{RUN}")


def histogram(name: str, counts: list[int]) -> list[prometheus.Sample]:
    out, running = [], 0
    for edge, n in zip(["1.0", "2.0", "3.0", "+Inf"], counts, strict=True):
        running += n
        out.append(prometheus.Sample({"feature": name, "le": edge}, float(running)))
    return out


def answers(y: list[int], plan: tuple[int, int] = (500, 500)) -> dict[str, Any]:
    queries = dq.queries(TARGET)
    return {
        queries[dq.ROWS]: [prometheus.Sample({}, 1000.0)],
        queries[dq.FEATURES]: histogram("x", [250] * 4) + histogram("y", y),
        queries[dq.CATEGORIES]: [
            prometheus.Sample({"feature": "plan", "category": "a"}, float(plan[0])),
            prometheus.Sample({"feature": "plan", "category": "b"}, float(plan[1])),
        ],
    }


def monitor(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "churn-drift", "namespace": NS, "uid": "uid-dm", "generation": 1},
        "spec": {
            "model": "churn",
            "reference": {"trainingData": True},
            "minSamples": 100,
            "onDrift": {"enabled": True, "cooldown": "1h"},
            **spec,
        },
    }


LIVE_VERSION = {
    "metadata": {"name": "churn-v1", "namespace": NS},
    "spec": {"model": "churn", "source": {"trainingJob": "churn-train"}},
    "status": {"phase": "Promoted", "registry": {"version": "3"}, "runId": RUN},
}
TEMPLATE = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn-train", "namespace": NS},
    "spec": {"entrypoint": "pkg.train:main", "datasets": [{"ref": "churn-data:v1"}]},
}


@dataclasses.dataclass
class World:
    kube: FakeKube
    artifacts: FakeArtifacts
    monkeypatch: pytest.MonkeyPatch

    def prometheus(self, value: dict[str, Any]) -> None:
        self.monkeypatch.setattr(FakePrometheus, "answers", value)

    def cycle(self, force: bool = True) -> decide.Plan | None:
        return handler._cycle(NS, "churn-drift", force, _LOGGER)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.kube.objects[("DriftMonitor", "churn-drift")].get("status") or {})


class _Logger:
    def warning(self, *args: Any) -> None:
        pass


_LOGGER: Any = _Logger()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    k = FakeKube(
        {
            ("DriftMonitor", "churn-drift"): monitor(),
            ("ModelVersion", "churn-v1"): copy.deepcopy(LIVE_VERSION),
            ("TrainingJob", "churn-train"): copy.deepcopy(TEMPLATE),
        }
    )
    artifacts = FakeArtifacts(
        "http://mlflow:5000", content=drift_profile.to_json(reference_profile())
    )
    monkeypatch.setattr(runtime, "client", lambda: k)
    config = pods.BuildConfig(mlflow_tracking_uri="http://mlflow:5000")
    monkeypatch.setattr(runtime, "build_config", lambda: config)
    monkeypatch.setenv("TOQUE_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setattr(prometheus, "Prometheus", FakePrometheus)
    monkeypatch.setattr(FakePrometheus, "times", [])
    monkeypatch.setattr(mlflow_artifacts, "Artifacts", lambda uri: artifacts)
    monkeypatch.setattr(handler, "_attempts", {})
    monkeypatch.setattr(handler, "_profiles", collections.OrderedDict())
    w = World(k, artifacts, monkeypatch)
    w.prometheus(answers([500] * 4))
    return w


def test_a_healthy_cycle_reads_profile_and_window_once_and_writes_status_once(
    world: World,
) -> None:
    plan = world.cycle()
    assert plan is not None and plan.phase == "Healthy"
    assert world.artifacts.reads == [(RUN, "toque/feature-bins.json")]
    # Every query at the same evaluation time: the answers see the same scrapes.
    times = set(FakePrometheus.times)
    assert len(FakePrometheus.times) == len(dq.queries(TARGET)) and len(times) == 1
    assert [c for c in world.kube.calls if c.startswith("status")] == [
        "status DriftMonitor/churn-drift"
    ]
    assert world.status["liveVersion"] == "churn-v1" and world.status["samples"] == 1000
    assert world.status["observedGeneration"] == 1
    assert not world.kube.created and not world.kube.events


def test_a_cycle_that_is_not_due_reads_nothing_more(world: World) -> None:
    world.cycle()
    calls = len(world.kube.calls)
    assert world.cycle(force=False) is None
    assert world.kube.calls[calls:] == ["get DriftMonitor/churn-drift"]
    assert len(world.artifacts.reads) == 1


def test_drift_posts_the_event_and_creates_exactly_one_retraining(world: World) -> None:
    world.prometheus(answers([0, 0, 100, 900], plan=(0, 1000)))
    plan = world.cycle()
    assert plan is not None and plan.phase == "Drifted"
    (job,) = world.kube.created
    assert job["metadata"]["annotations"][dm.ANNOTATION_TRIGGERED_BY] == "DriftMonitor/churn-drift"
    assert job["spec"]["datasets"] == [{"ref": "churn-data:latest"}]
    assert world.status["lastRetrainJob"] == job["metadata"]["name"]
    assert [r for _, r, _ in world.kube.events] == ["DriftDetected", "RetrainTriggered"]
    assert "drifted features: y, plan" in world.kube.events[0][2]
    # The next evaluation sees the retraining still pending: no second one.
    world.cycle()
    assert len(world.kube.created) == 1
    assert world.status["retrainMessage"].endswith("still runs")


def test_a_retraining_that_already_exists_is_taken_as_created(world: World) -> None:
    world.prometheus(answers([0, 0, 100, 900], plan=(0, 1000)))
    world.kube.create_error = kube.ApiException(status=409, reason="AlreadyExists")
    world.cycle()
    assert world.status["lastRetrainJob"].startswith("churn-drift-retrain-")
    assert "RetrainTriggered" in [r for _, r, _ in world.kube.events]


def test_a_refused_retraining_is_reported_not_retried_as_if_created(world: World) -> None:
    world.prometheus(answers([0, 0, 100, 900], plan=(0, 1000)))
    world.kube.create_error = kube.ApiException(
        status=422, reason="Unprocessable", body=json.dumps({"message": "spec.x: invalid"})
    )
    world.cycle()
    assert "lastRetrainJob" not in world.status
    assert "spec.x: invalid" in world.status["retrainMessage"]
    assert [r for _, r, _ in world.kube.events][-1] == "RetrainFailed"


def test_prometheus_down_writes_ready_false_then_raises_a_temporary_error(world: World) -> None:
    query = dq.queries(TARGET)[dq.FEATURES]
    world.prometheus({query: prometheus.PrometheusUnavailableError("connection refused")})
    with pytest.raises(kopf.TemporaryError, match="connection refused"):
        world.cycle()
    ready = next(c for c in world.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PrometheusUnavailable")
    assert "lastEvaluationTime" not in world.status and "drifted" not in world.status


def test_mlflow_down_is_temporary_and_a_run_without_profile_is_not(world: World) -> None:
    world.artifacts.content = mlflow_registry.RegistryUnavailableError("timeout")
    with pytest.raises(kopf.TemporaryError):
        world.cycle()
    assert world.status["conditions"][0]["reason"] == "MLflowUnavailable"
    world.artifacts.content = mlflow_registry.RegistryNotFoundError("no such artifact")
    plan = world.cycle()
    assert plan is not None and plan.phase == "Failed"
    assert "has no toque/feature-bins.json" in world.status["message"]


def test_an_old_bins_document_fails_with_the_engine_s_advice(world: World) -> None:
    world.artifacts.content = json.dumps({"format": 1, "features": {"x": {"kind": "numeric"}}})
    world.artifacts.content = world.artifacts.content.encode()
    world.cycle()
    assert world.status["phase"] == "Failed" and "retrain" in world.status["message"]


def test_the_profile_of_a_run_is_read_once(world: World) -> None:
    first = handler._profile(RUN)
    assert handler._profile(RUN) is first and len(world.artifacts.reads) == 1


def test_a_scheduled_monitor_applies_its_cronjob_and_records_a_finished_check(
    world: World,
) -> None:
    world.kube.objects[("DriftMonitor", "churn-drift")] = monitor(
        mode="scheduled", schedule="@hourly", onDrift=None
    )
    plan = world.cycle()
    assert plan is not None and plan.phase == "Pending"
    assert world.kube.applied[0]["kind"] == "CronJob"
    report = {
        "verdict": "Healthy",
        "samples": 700,
        "total_features": 3,
        "monitored_features": 3,
        "drift_share": 0.0,
        "share_threshold": 0.5,
        "dataset_drifted": False,
        "drifted_features": [],
        "features": [{"name": "x", "method": "ks", "verdict": "NoDrift", "drifted": False}],
    }
    labels = {dm.LABEL_DRIFT_MONITOR: "churn-drift", "app.kubernetes.io/component": "drift-check"}
    annotations = {"toque.dev/drift-monitor-name": "churn-drift"}
    for name, finished in (
        ("check-1", "2026-11-27T09:00:05Z"),
        ("check-2", "2026-11-27T10:00:05Z"),
    ):
        world.kube.objects[("Job", name)] = {
            "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels,
                         "annotations": annotations},
            "status": {"completionTime": finished,
                       "conditions": [{"type": "Complete", "status": "True"}]},
        }  # fmt: skip
        world.kube.objects[("Pod", f"{name}-pod")] = {
            "metadata": {
                "name": f"{name}-pod",
                "labels": {"batch.kubernetes.io/controller-uid": f"uid-{name}"},
            },
            "status": {
                "containerStatuses": [
                    {
                        "name": "drift",
                        "state": {"terminated": {"exitCode": 0, "message": json.dumps(report)}},
                    }
                ]
            },
        }
    world.cycle()
    assert world.status["phase"] == "Healthy" and world.status["lastScheduledJob"] == "check-2"
    assert world.status["lastEvaluationTime"] == "2026-11-27T10:00:05Z"
    assert world.status["samples"] == 700


# -- the MLflow artifact client ----------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}  # noqa: RUF012

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, b'{"error_code": "NOT_FOUND"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def mlflow_http() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_artifact_is_read_through_the_get_artifact_endpoint(mlflow_http: str) -> None:
    path = f"/get-artifact?run_id={RUN}&path=toque%2Ffeature-bins.json"
    _Handler.answers = {path: (200, b'{"format": 1}')}
    assert mlflow_artifacts.Artifacts(mlflow_http).read(RUN, "toque/feature-bins.json") == (
        b'{"format": 1}'
    )


def test_artifact_errors_say_whether_a_retry_helps(mlflow_http: str) -> None:
    client = mlflow_artifacts.Artifacts(mlflow_http)
    _Handler.answers = {}
    with pytest.raises(mlflow_registry.RegistryNotFoundError):
        client.read(RUN, "toque/missing.json")
    _Handler.answers = {f"/get-artifact?run_id={RUN}&path=x": (503, b"busy")}
    with pytest.raises(mlflow_registry.RegistryUnavailableError):
        client.read(RUN, "x")
    _Handler.answers = {f"/get-artifact?run_id={RUN}&path=x": (403, b"forbidden")}
    with pytest.raises(mlflow_registry.RegistryRejectedError):
        client.read(RUN, "x")
    with pytest.raises(mlflow_registry.RegistryUnavailableError, match=r"127\.0\.0\.1:9"):
        mlflow_artifacts.Artifacts("http://127.0.0.1:9").read(RUN, "x")


# -- the operator's series -------------------------------------------------------------------


def snapshot(features: tuple[dm.FeatureScore, ...], version: str = "3") -> decide.Snapshot:
    return decide.Snapshot(
        namespace="ns-metrics",
        monitor="m",
        model="churn",
        version=version,
        features=features,
        dataset_drifted=True,
        drift_share=0.5,
        samples=900,
        estimated_accuracy=0.9,
        accuracy=None,
        reference_accuracy=0.92,
        output_drift_score=None,
        bias=dm.BiasStatus(
            feature="plan",
            groups=[dm.GroupRates(group="a", positive_rate=0.3)],
            disparity=0.1,
            biased=False,
        ),
        performance_degraded=None,
    )


def value(name: str, **labels: str) -> float | None:
    base = {"namespace": "ns-metrics", "monitor": "m", "model": "churn"}
    return prometheus_client.REGISTRY.get_sample_value(name, {**base, **labels})


def test_the_drift_series_of_a_monitor_are_replaced_as_a_whole() -> None:
    age = dm.FeatureScore(name="age", method="psi", score=0.3, threshold=0.2, drifted=True)
    plan = dm.FeatureScore(name="plan", method="jsd", score=0.01, threshold=0.1, drifted=False)
    metrics.DRIFT.set(snapshot((age, plan)))
    feature = {"version": "3", "feature": "age", "method": "psi"}
    assert value("toque_drift_feature_drifted", **feature) == 1.0
    assert value("toque_drift_feature_score", **feature) == 0.3
    assert value("toque_drift_feature_threshold", **feature) == 0.2
    assert value("toque_drift_dataset_drifted", version="3") == 1.0
    assert value("toque_drift_samples", version="3") == 900
    assert value("toque_drift_accuracy", version="3") is None
    assert value("toque_drift_group_positive_rate", version="3", feature="plan", group="a") == 0.3
    metrics.DRIFT.set(snapshot((plan,), version="4"))
    assert value("toque_drift_feature_drifted", **feature) is None
    assert value("toque_drift_dataset_drifted", version="4") == 1.0
    metrics.DRIFT.forget("ns-metrics", "m")
    assert value("toque_drift_dataset_drifted", version="4") is None


def test_a_started_retraining_is_counted(world: World) -> None:
    labels = {"namespace": NS, "monitor": "churn-drift"}
    before = prometheus_client.REGISTRY.get_sample_value("toque_drift_retrains_total", labels) or 0
    world.prometheus(answers([0, 0, 100, 900], plan=(0, 1000)))
    world.cycle()
    after = prometheus_client.REGISTRY.get_sample_value("toque_drift_retrains_total", labels)
    assert after == before + 1


def test_a_new_monitor_is_due_at_once_and_an_evaluated_one_is_not(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    assert handler._due(monitor(), now)
    world.cycle()
    evaluated = world.kube.objects[("DriftMonitor", "churn-drift")]
    assert not handler._due(evaluated, now + dt.timedelta(seconds=1))
