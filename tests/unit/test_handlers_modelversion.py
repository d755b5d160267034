"""The ModelVersion handler's observe steps with fakes for the API server, MLflow and
Prometheus: they only read and write, and hand what they read to ``toque.reconcile``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, cast

import pytest

from toque.api import modelversion as mv
from toque.clients import kube, mlflow_registry, prometheus
from toque.handlers import modelversion as handler
from toque.reconcile import analysis as an
from toque.reconcile import modelversion as decide
from toque.reconcile import registration as reg

DIGEST = "sha256:" + "d" * 64
RUN = "b" * 32


@dataclasses.dataclass
class FakeKube:
    objects: dict[tuple[str, str], dict[str, Any]]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return self.objects.get((kind, name))


@dataclasses.dataclass
class FakeRegistry:
    tags: dict[str, dict[str, str]]
    registered: list[tuple[str, str, str | None, dict[str, str], str]] = dataclasses.field(
        default_factory=list
    )
    reads: list[str] = dataclasses.field(default_factory=list)
    fail: Exception | None = None

    def run_tags(self, run_id: str) -> dict[str, str]:
        self.reads.append(run_id)
        if self.fail:
            raise self.fail
        return self.tags[run_id]

    def register(
        self, model: str, uri: str, run: str | None, tags: dict[str, str], owner_uid: str
    ) -> str:
        self.registered.append((model, uri, run, tags, owner_uid))
        return "7"


def unregistered(source: dict[str, Any]) -> decide.Version:
    return decide.Version(
        name="iris-v2",
        uid="uid-2",
        generation=1,
        created="2026-11-27T10:00:00Z",
        spec={"model": "iris", "source": source},
        status={},
    )


def register(version: decide.Version, k: FakeKube, registry: FakeRegistry | None) -> decide.Version:
    return handler._register(
        cast(kube.Kube, k), cast(mlflow_registry.Registry | None, registry), "ns", version
    )


def test_a_trainingjob_source_is_registered_with_the_runs_lineage() -> None:
    tj = {
        "status": {
            "phase": "Succeeded",
            "modelUri": "models:/m-1",
            "mlflowRunId": RUN,
            "modelDigest": DIGEST,
        }
    }
    registry = FakeRegistry({RUN: {"toque.code_revision": "git:1", "mlflow.user": "x"}})
    out = register(
        unregistered({"trainingJob": "train"}), FakeKube({("TrainingJob", "train"): tj}), registry
    )
    assert out.registry_version == "7" and out.error is None and out.waiting is None
    assert out.source == reg.Source("models:/ns.iris/7", RUN, DIGEST)
    ((model, uri, run, tags, owner),) = registry.registered
    assert (model, uri, run, owner) == ("ns.iris", "models:/m-1", RUN, "uid-2")
    assert tags == {
        "toque.code_revision": "git:1",
        "toque.modelversion": "ns/iris-v2",
        "toque.trainingjob": "ns/train",
        reg.DIGEST_TAG: DIGEST,
    }


def test_a_running_trainingjob_waits_without_asking_mlflow() -> None:
    registry = FakeRegistry({})
    tj = {"status": {"phase": "Running"}}
    out = register(
        unregistered({"trainingJob": "train"}), FakeKube({("TrainingJob", "train"): tj}), registry
    )
    assert out.waiting is not None and "phase Running" in out.waiting
    assert registry.reads == [] and registry.registered == []


def test_a_run_without_a_digest_fails_and_registers_nothing() -> None:
    registry = FakeRegistry({RUN: {}})
    out = register(unregistered({"runId": RUN}), FakeKube({}), registry)
    assert out.error is not None and "no model digest on record" in out.error
    assert registry.reads == [RUN] and registry.registered == []


@pytest.mark.parametrize(
    ("error", "field", "text"),
    [
        (mlflow_registry.RegistryUnavailableError("down"), "registry_error", "MLflow unreachable"),
        (mlflow_registry.RegistryNotFoundError("no run"), "error", "not in MLflow"),
    ],
)
def test_registry_errors_become_waits_or_problems(error: Exception, field: str, text: str) -> None:
    registry = FakeRegistry({}, fail=error)
    out = register(unregistered({"runId": RUN}), FakeKube({}), registry)
    assert text in str(getattr(out, field))


def test_no_registry_configured_waits_and_an_invalid_spec_is_left_to_the_plan() -> None:
    out = register(unregistered({"runId": RUN}), FakeKube({}), None)
    assert out.waiting == "no MLflow tracking URI configured"
    registry = FakeRegistry({})
    bad = register(unregistered({"runId": "not-a-run"}), FakeKube({}), registry)
    assert bad.error is None and bad.waiting is None and registry.reads == []


class FakePrometheus:
    answers: ClassVar[dict[str, Any]] = {}

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[prometheus.Sample]:
        answer = self.answers[promql]
        if isinstance(answer, Exception):
            raise answer
        return cast(list[prometheus.Sample], answer)


def request(*checks: an.Check) -> decide.AnalysisRequest:
    return decide.AnalysisRequest("v2", 0, checks, mv.Analysis())


def test_the_queries_are_run_and_answered_per_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "Prometheus", FakePrometheus)
    monkeypatch.setattr(
        FakePrometheus,
        "answers",
        {
            "q-ok": [prometheus.Sample(labels={"a": "b"}, value=0.5)],
            "q-bad": prometheus.PrometheusQueryError("parse error"),
        },
    )
    answers, error = handler._query(
        request(an.Check("ok", {"value": "q-ok"}, 0), an.Check("bad", {"value": "q-bad"}, 0))
    )
    assert error is None
    assert answers["ok"] == an.Answer(samples={"value": [an.Sample({"a": "b"}, 0.5)]})
    assert answers["bad"].error is not None and "parse error" in answers["bad"].error


def test_an_unreachable_prometheus_answers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "Prometheus", FakePrometheus)
    monkeypatch.setattr(
        FakePrometheus, "answers", {"q": prometheus.PrometheusUnavailableError("refused")}
    )
    answers, error = handler._query(request(an.Check("ok", {"value": "q"}, 0)))
    assert answers == {} and error == "Prometheus unreachable: refused"
