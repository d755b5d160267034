"""The operator metrics the chart's alerts need (helm/toque/templates/prometheusrule.yaml):
training failures and rollbacks counted once, where the status that records them is written,
and the step-start gauge of a canary. The handlers run against a fake API server."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, cast

import prometheus_client
import pytest

from toque.clients import kube
from toque.handlers import metrics, runtime
from toque.handlers import modelversion as mv_handler
from toque.handlers import trainingjob as tj_handler
from toque.reconcile import modelversion as mv_decide
from toque.resources import pods

STEP_METRIC = "toque_modelversion_step_started_timestamp_seconds"


def sample(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


@dataclasses.dataclass
class FakeKube:
    """Holds objects by (kind, name); a status patch replaces the object."""

    objects: dict[tuple[str, str], dict[str, Any]]
    fail_patch: bool = False
    patches: list[str] = dataclasses.field(default_factory=list)

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return self.objects.get((kind, name))

    def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> Any:
        return []

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        if self.fail_patch:
            raise kube.ApiException(status=500, reason="Internal Server Error")
        self.patches.append(name)
        # A new object, as the API server answers: the handler's copy keeps the old status.
        self.objects[(kind, name)] = {**self.objects[(kind, name)], "status": status}

    def apply(self, obj: dict[str, Any], **kwargs: Any) -> None:
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj

    def event(self, *args: Any) -> None:
        return None


def trainingjob(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "generation": 1}, "spec": spec}


@pytest.fixture
def tj_kube(monkeypatch: pytest.MonkeyPatch) -> FakeKube:
    k = FakeKube({})
    monkeypatch.setattr(runtime, "client", lambda: k)
    monkeypatch.setattr(runtime, "build_config", lambda: pods.BuildConfig(runtime_image="t:1"))
    return k


def tj_cycle(namespace: str, name: str) -> None:
    tj_handler._cycle(namespace, name, cast(Any, None))


def test_a_trainingjob_entering_failed_is_counted_once_and_not_again_on_resume(
    tj_kube: FakeKube,
) -> None:
    # An invalid spec fails in the first cycle; the next cycles (a resume) see it Failed.
    tj_kube.objects[("TrainingJob", "bad")] = trainingjob("bad", {"entrypoint": 42})
    before = sample("toque_trainingjob_failures_total", namespace="fail-ns") or 0.0
    tj_cycle("fail-ns", "bad")
    assert tj_kube.objects[("TrainingJob", "bad")]["status"]["phase"] == "Failed"
    assert sample("toque_trainingjob_failures_total", namespace="fail-ns") == before + 1
    tj_cycle("fail-ns", "bad")
    tj_cycle("fail-ns", "bad")
    assert sample("toque_trainingjob_failures_total", namespace="fail-ns") == before + 1


def test_a_namespace_gets_its_failure_counter_at_zero_before_any_failure(
    tj_kube: FakeKube,
) -> None:
    tj_kube.objects[("TrainingJob", "ok")] = trainingjob(
        "ok", {"entrypoint": "pkg.mod:fn", "resources": {"cpu": "1"}}
    )
    tj_handler._cycle("quiet-ns", "ok", cast(Any, None))
    assert tj_kube.objects[("TrainingJob", "ok")]["status"]["phase"] == "Pending"
    assert sample("toque_trainingjob_failures_total", namespace="quiet-ns") == 0.0


def test_the_failure_counter_moves_only_on_the_transition_into_failed() -> None:
    def count() -> float:
        return sample("toque_trainingjob_failures_total", namespace="direct-ns") or 0.0

    start = count()
    metrics.trainingjob_written("direct-ns", {"phase": "Running"}, {"phase": "Succeeded"})
    metrics.trainingjob_written("direct-ns", {"phase": "Failed"}, {"phase": "Failed"})
    metrics.trainingjob_written("direct-ns", None, {"phase": "Pending"})
    assert count() == start
    metrics.trainingjob_written("direct-ns", {"phase": "Running"}, {"phase": "Failed"})
    assert count() == start + 1


def modelversion(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"model": "iris"}, "status": status}


def act(k: FakeKube, namespace: str, statuses: dict[str, dict[str, Any]]) -> None:
    plan = mv_decide.Plan(statuses=statuses)
    bodies = [b for (kind, _), b in k.objects.items() if kind == "ModelVersion"]
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    mv_handler._act(cast(kube.Kube, k), None, namespace, "iris", plan, bodies, now, cast(Any, None))


def rollbacks(namespace: str, phase: str) -> float | None:
    return sample(
        "toque_modelversion_rollbacks_total", namespace=namespace, model="iris", phase=phase
    )


def test_a_rolled_back_canary_is_counted_once_after_its_status_is_written() -> None:
    canary = {"phase": "Progressing", "currentStep": 1, "stepStartedAt": "2026-11-27T11:00:00Z"}
    k = FakeKube({("ModelVersion", "iris-v2"): modelversion("iris-v2", dict(canary))})
    act(k, "rb-ns", {"iris-v2": dict(canary)})
    assert rollbacks("rb-ns", "RolledBack") == 0.0  # exists before the first rollback
    assert rollbacks("rb-ns", "Aborted") == 0.0 and rollbacks("rb-ns", "Failed") == 0.0
    ended = {**canary, "phase": "RolledBack"}
    k.fail_patch = True
    with pytest.raises(kube.ApiException):
        act(k, "rb-ns", {"iris-v2": dict(ended)})
    assert rollbacks("rb-ns", "RolledBack") == 0.0  # not written: the retry counts it
    k.fail_patch = False
    act(k, "rb-ns", {"iris-v2": dict(ended)})
    act(k, "rb-ns", {"iris-v2": dict(ended)})
    assert rollbacks("rb-ns", "RolledBack") == 1.0
    assert rollbacks("rb-ns", "Aborted") == 0.0


def test_a_canary_step_exports_when_it_started_until_the_version_settles() -> None:
    canary = {"phase": "Paused", "currentStep": 2, "stepStartedAt": "2026-11-27T11:00:00Z"}
    k = FakeKube({("ModelVersion", "iris-v3"): modelversion("iris-v3", dict(canary))})
    act(k, "step-ns", {"iris-v3": dict(canary)})
    labels = {
        "namespace": "step-ns",
        "modelversion": "iris-v3",
        "model": "iris",
        "phase": "Paused",
        "step": "2",
    }
    started = dt.datetime(2026, 11, 27, 11, tzinfo=dt.UTC).timestamp()
    assert sample(STEP_METRIC, **labels) == started
    act(k, "step-ns", {"iris-v3": {**canary, "phase": "Promoted", "stepStartedAt": None}})
    assert sample(STEP_METRIC, **labels) is None


def test_a_deleted_or_stepless_version_exports_no_step() -> None:
    metrics.MODELVERSION_STEPS.set(
        "gone-ns", "v1", "m", {"phase": "Progressing", "stepStartedAt": "2026-11-27T11:00:00Z"}
    )
    labels = {"namespace": "gone-ns", "modelversion": "v1", "model": "m"}
    assert sample(STEP_METRIC, **labels, phase="Progressing", step="0") is not None
    metrics.MODELVERSION_STEPS.forget("gone-ns", "v1")
    assert sample(STEP_METRIC, **labels, phase="Progressing", step="0") is None
    metrics.MODELVERSION_STEPS.set("gone-ns", "v1", "m", {"phase": "Progressing"})
    assert sample(STEP_METRIC, **labels, phase="Progressing", step="0") is None
