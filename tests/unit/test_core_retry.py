"""Backoff within a budget: transient errors retried, permanent ones raised, text redacted."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from toque.core import retry

LOG = logging.getLogger("test.retry")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _flaky(failures: list[BaseException]) -> Callable[[], str]:
    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    return call


def test_transient_errors_are_retried_with_growing_waits() -> None:
    clock = Clock()
    call = _flaky([ConnectionRefusedError(), TimeoutError(), ConnectionResetError()])
    result = retry.with_backoff(
        call,
        "reach x",
        60,
        LOG,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert result == "ok" and clock.sleeps == [1.0, 2.0, 4.0]


def test_permanent_errors_are_raised_at_once() -> None:
    clock = Clock()
    with pytest.raises(ValueError):
        retry.with_backoff(
            _flaky([ValueError("503 in the text")]),
            "x",
            60,
            LOG,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert clock.sleeps == []


def test_the_budget_ends_in_a_redacted_dependency_down_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refused = ConnectionRefusedError("http://u:hunter22@mlflow:5000 refused")
    with caplog.at_level(logging.WARNING), pytest.raises(retry.DependencyDownError) as down:
        retry.with_backoff(
            _flaky([refused] * 10),
            "reach MLflow",
            3.5,
            LOG,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert str(down.value) == "reach MLflow: http://***@mlflow:5000 refused"
    assert down.value.__cause__ is refused
    assert "hunter22" not in caplog.text and clock.sleeps == [1.0, 2.0]


def test_an_inner_loop_that_gave_up_is_not_retried_again() -> None:
    clock = Clock()
    inner = retry.DependencyDownError("pull x: down")
    with pytest.raises(retry.DependencyDownError) as down:
        retry.with_backoff(
            _flaky([inner]),
            "outer",
            60,
            LOG,
            sleep=clock.sleep,
            clock=lambda: clock.now,
        )
    assert down.value is inner and clock.sleeps == []
