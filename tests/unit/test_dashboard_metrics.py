"""The operator metrics the Grafana dashboards added: training run and GPU time counted once
per finished run, the reconcile queue (in flight, waiting for a retry), the leader election,
the API client's latency, and the drift retraining counter that exists before its first
increment."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import kopf
import prometheus_client
import pytest
import urllib3

from toque.clients import kube
from toque.handlers import cycle, metrics
from toque.reconcile import driftmonitor as decide


def value(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def finished(phase: str, seconds: int = 90) -> dict[str, Any]:
    return {
        "phase": phase,
        "startTime": "2026-01-01T10:00:00Z",
        "completionTime": f"2026-01-01T10:{seconds // 60:02d}:{seconds % 60:02d}Z",
    }


def test_a_finished_run_observes_its_run_time_and_gpu_time_once() -> None:
    ns = "ns-duration"
    spec = {"resources": {"gpu": 2}}
    metrics.trainingjob_finished(ns, spec, None, {"phase": "Running"})
    # The series exist before the first run finishes, so increase() sees that run.
    assert value("toque_trainingjob_duration_seconds_count", namespace=ns, phase="Failed") == 0
    assert value("toque_trainingjob_gpu_seconds_total", namespace=ns) == 0
    metrics.trainingjob_finished(ns, spec, {"phase": "Running"}, finished("Succeeded"))
    # A later cycle (or a restarted operator) sees the run already finished: nothing more.
    metrics.trainingjob_finished(ns, spec, finished("Succeeded"), finished("Succeeded"))
    count = "toque_trainingjob_duration_seconds_count"
    assert value(count, namespace=ns, phase="Succeeded") == 1
    assert value("toque_trainingjob_duration_seconds_sum", namespace=ns, phase="Succeeded") == 90
    assert value("toque_trainingjob_gpu_seconds_total", namespace=ns) == 180


def test_a_run_that_failed_before_its_job_started_has_no_run_time() -> None:
    ns = "ns-early-failure"
    metrics.trainingjob_finished(ns, {}, {"phase": "Pending"}, {"phase": "Failed"})
    assert value("toque_trainingjob_duration_seconds_count", namespace=ns, phase="Failed") == 0
    # No GPU asked for: no GPU series for the namespace.
    assert value("toque_trainingjob_gpu_seconds_total", namespace=ns) is None


def test_leadership_counts_each_takeover_not_each_call() -> None:
    election = "toque-test-election"
    metrics.leadership(election, False)
    assert value("toque_operator_leader", election=election) == 0
    assert value("toque_operator_leader_changes_total", election=election) == 0
    metrics.leadership(election, True)
    metrics.leadership(election, True)
    assert value("toque_operator_leader", election=election) == 1
    assert value("toque_operator_leader_changes_total", election=election) == 1
    metrics.leadership(election, False)
    metrics.leadership(election, True)
    assert value("toque_operator_leader_changes_total", election=election) == 2


KIND = "DashboardTestKind"


def depth() -> float | None:
    return value("toque_reconcile_queue_depth", kind=KIND)


def test_an_unsettled_or_failed_object_waits_in_the_queue_until_a_cycle_settles_it() -> None:
    target = cycle.Target(KIND, "ns", "obj")
    with pytest.raises(kopf.TemporaryError):
        cycle.retrying(target, lambda: cycle.LookAgain(5.0, "not yet"))
    assert depth() == 1

    def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cycle.retrying(target, boom)
    assert depth() == 1  # still the one object
    cycle.retrying(target, lambda: None)
    assert depth() == 0


def test_a_queued_object_kopf_never_retried_is_forgotten_after_its_grace() -> None:
    queue = metrics._QueueCollector()
    queue.waiting("K", "ns", "gone", until=100.0)
    assert queue.depth(now=99.0) == {"K": 1}
    assert queue.depth(now=101.0) == {"K": 0}


def test_a_cycle_counts_in_flight_while_it_runs() -> None:
    seen: list[float | None] = []
    target = cycle.Target(KIND + "InFlight", "ns", "obj")
    cycle.run(target, lambda: seen.append(value("toque_reconcile_in_flight", kind=target.kind)))
    assert seen == [1.0]
    assert value("toque_reconcile_in_flight", kind=target.kind) == 0


def test_a_drift_evaluation_makes_the_monitors_retraining_counter_exist() -> None:
    snapshot = decide.Snapshot(
        namespace="ns-retrains",
        monitor="m",
        model="churn",
        version="1",
        features=(),
        dataset_drifted=False,
        drift_share=0.0,
        samples=10,
        estimated_accuracy=None,
        accuracy=None,
        reference_accuracy=None,
        output_drift_score=None,
        bias=None,
        performance_degraded=None,
    )
    metrics.DRIFT.set(snapshot)
    assert value("toque_drift_retrains_total", namespace="ns-retrains", monitor="m") == 0
    metrics.DRIFT.forget("ns-retrains", "m")


@dataclasses.dataclass
class _Response:
    status: int
    data: bytes = b"{}"
    reason: str = ""

    def read(self) -> None:
        pass


class _Api:
    """Just enough of kubernetes.client.ApiClient for ``Kube.request``."""

    def __init__(self, answer: _Response | Exception) -> None:
        self.answer = answer

    def param_serialize(self, **kwargs: Any) -> tuple[Any, ...]:
        return kwargs["method"], kwargs["resource_path"], kwargs["header_params"], None, None

    def call_api(self, *args: Any, **kwargs: Any) -> _Response:
        time.sleep(0.01)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def requests_of(verb: str, code: str) -> float:
    return value("toque_kube_request_duration_seconds_count", verb=verb, code=code) or 0.0


def test_api_requests_are_timed_by_verb_and_status() -> None:
    before = requests_of("PUT", "200"), requests_of("PUT", "409")
    kube.Kube(_Api(_Response(200))).request("PUT", "/api/v1/x")  # type: ignore[arg-type]
    with pytest.raises(kube.ApiException):
        kube.Kube(_Api(_Response(409))).request("PUT", "/api/v1/x")  # type: ignore[arg-type]
    assert (requests_of("PUT", "200"), requests_of("PUT", "409")) == (before[0] + 1, before[1] + 1)
    total = value("toque_kube_request_duration_seconds_sum", verb="PUT", code="200") or 0.0
    assert total >= 0.01


def test_an_api_request_without_an_answer_is_timed_as_an_error() -> None:
    before = requests_of("DELETE", "error")
    refused = urllib3.exceptions.MaxRetryError(None, "/api", reason=None)  # type: ignore[arg-type]
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        kube.Kube(_Api(refused)).request("DELETE", "/api/v1/x")  # type: ignore[arg-type]
    assert requests_of("DELETE", "error") == before + 1
