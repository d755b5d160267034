"""The one wrapper of every reconcile cycle: lock, metrics on success and failure, and the
mapping of errors to kopf retries. No cluster: the cycles are plain functions."""

from __future__ import annotations

import logging
import threading

import kopf
import prometheus_client
import pytest
import urllib3

from toque.clients import kube, mlflow_registry
from toque.handlers import cycle, runtime

KIND = "CycleTestKind"


def target(key: str = "obj") -> cycle.Target:
    return cycle.Target(KIND, "ns", key)


def sample(name: str, **labels: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(name, {"kind": KIND, **labels})
    return value or 0.0


def counts(result: str) -> tuple[float, float]:
    return (
        sample("toque_reconcile_total", result=result),
        sample("toque_reconcile_duration_seconds_count"),
    )


def test_a_successful_cycle_is_counted_and_timed_and_returns_its_value() -> None:
    before = counts("success")
    assert cycle.run(target(), lambda: 42) == 42
    after = counts("success")
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1


def test_a_failed_cycle_is_counted_timed_and_classified_then_raised() -> None:
    before = counts("error")
    errors = sample("toque_reconcile_errors_total", error="ZeroDivisionError")

    def boom() -> None:
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        cycle.run(target(), boom)
    after = counts("error")
    assert after[0] == before[0] + 1
    assert after[1] == before[1] + 1  # the duration is recorded on failure too
    assert sample("toque_reconcile_errors_total", error="ZeroDivisionError") == errors + 1


def test_the_cycle_holds_the_objects_lock() -> None:
    lock = runtime.lock_for("ns", "locked")
    held: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)
        held.append(not got)
        if got:
            lock.release()

    # From another thread: the lock is not re-entrant, so a held lock refuses it.
    worker = threading.Thread(target=lambda: cycle.run(target("locked"), probe))
    worker.start()
    worker.join()
    assert held == [True]
    assert not lock.locked()


@pytest.mark.parametrize(
    ("error", "delay", "text"),
    [
        (kube.ApiException(status=503, reason="Service Unavailable"), 5.0, "API server: 503"),
        (kube.ApiException(status=409, reason="Conflict"), 5.0, "API server: 409"),
        (kube.ApiException(status=429, reason="Too Many Requests"), 5.0, "API server: 429"),
        (ConnectionRefusedError("refused"), 5.0, "API server unreachable"),
        (
            urllib3.exceptions.MaxRetryError(urllib3.HTTPConnectionPool("localhost"), "/api"),
            5.0,
            "API server unreachable",
        ),
        (mlflow_registry.RegistryUnavailableError("down"), 10.0, "MLflow unreachable: down"),
    ],
)
def test_transient_errors_become_kopf_retries(error: Exception, delay: float, text: str) -> None:
    def failing() -> None:
        raise error

    with pytest.raises(kopf.TemporaryError) as raised:
        cycle.retrying(target(), failing)
    assert raised.value.delay == delay and text in str(raised.value)
    assert raised.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        kube.ApiException(status=422, reason="Unprocessable Entity"),
        kube.ApiException(status=403, reason="Forbidden"),
        mlflow_registry.RegistryRejectedError("INVALID_PARAMETER_VALUE", "no"),
        ValueError("a bug"),
    ],
)
def test_permanent_errors_are_raised_as_they_are(error: Exception) -> None:
    def failing() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        cycle.retrying(target(), failing)
    assert raised.value is error


def test_a_kopf_retry_raised_by_the_cycle_keeps_its_own_delay() -> None:
    def waiting() -> None:
        raise kopf.TemporaryError("no MLflow tracking URI configured", delay=30)

    with pytest.raises(kopf.TemporaryError) as raised:
        cycle.retrying(target(), waiting)
    assert raised.value.delay == 30


def test_an_unsettled_object_is_looked_at_again_with_the_kinds_delay() -> None:
    before = counts("success")
    with pytest.raises(kopf.TemporaryError) as raised:
        cycle.retrying(target(), lambda: cycle.LookAgain(15.0, "run not settled yet"))
    assert raised.value.delay == 15.0 and "run not settled yet" in str(raised.value)
    assert counts("success")[0] == before[0] + 1  # the cycle itself succeeded
    cycle.retrying(target(), lambda: None)  # settled: no retry


def test_best_effort_logs_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    def failing() -> None:
        raise kube.ApiException(status=500, reason="Internal Server Error")

    logger = logging.getLogger("cycle-test")
    with caplog.at_level(logging.WARNING, logger="cycle-test"):
        cycle.best_effort(target("child"), failing, logger)
    assert f"reconcile of {KIND} ns/child failed" in caplog.text
