"""Micro-batching: concurrent requests share a model call, within the row and latency limits.

Driven in-process through the ASGI app with a fake fast path that records each call's rows
(it doubles ``x``), so what is asserted is exactly how requests were grouped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.unit.test_serving_native import call
from toque.serving import app, exact, model, runner, signature


class Doubling:
    """A fast path that records the rows of each call; negative x fails the call."""

    kind = "fake"
    input = "matrix"
    float32 = False
    classes = None

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.sleep_s = sleep_s
        self._lock = threading.Lock()

    def run(self, x: npt.NDArray[np.float64], proba: bool) -> runner.Output:
        with self._lock:
            self.calls.append(len(x))
        time.sleep(self.sleep_s)
        if (x < 0).any():
            raise ValueError("negative x")
        return runner.Output(x[:, 0] * 2, inputs=x)


def _served(
    fast: Doubling, batching: str = exact.EXACT, seconds: float = 0.0, **settings: Any
) -> app.App:
    predictor = model.Predictor(
        signature.from_names(["x"]),
        None,
        None,
        fast=fast,
        batching=batching,
        cost=exact.Cost(seconds, 0.0),
    )
    return app.App(
        app.Settings(
            model_name="m", version="1", digest="sha256:" + "0" * 64, sample_rate=0, **settings
        ),
        predictor,
        {},
    )


def _rows(*values: float) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["x"], "data": [[v] for v in values]}}


async def _many(served: app.App, documents: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    return list(await asyncio.gather(*(call(served, "/invocations", d) for d in documents)))


def _run(served: app.App, go: Any) -> Any:
    async def main() -> Any:
        served.startup()
        try:
            return await go()
        finally:
            served.shutdown()

    return asyncio.run(main())


def test_concurrent_small_requests_share_one_model_call() -> None:
    fast = Doubling()
    served = _served(fast)
    answers = _run(served, lambda: _many(served, [_rows(float(i)) for i in range(10)]))
    assert answers == [(200, {"predictions": [2.0 * i]}) for i in range(10)]
    assert fast.calls == [10]
    counts = served.metrics.total()
    assert (counts.batch_rows_sum, sum(counts.batch_rows), sum(counts.batch_wait)) == (10, 1, 10)
    assert counts.rows == 10


def test_a_batch_never_takes_more_than_max_rows() -> None:
    fast = Doubling()
    served = _served(fast, batch_max_rows=8)
    documents = [_rows(1.0, 2.0, 3.0) for _ in range(10)]
    answers = _run(served, lambda: _many(served, documents))
    assert all(a == (200, {"predictions": [2.0, 4.0, 6.0]}) for a in answers)
    assert sum(fast.calls) == 30 and max(fast.calls) <= 8 and len(fast.calls) == 5


def test_a_model_whose_answers_depend_on_the_batch_is_called_per_request() -> None:
    fast = Doubling()
    served = _served(fast, batching=exact.OFF)
    _run(served, lambda: _many(served, [_rows(1.0) for _ in range(6)]))
    assert fast.calls == [1] * 6
    assert served.metrics.layout.batch_max_rows == 1


def test_one_bad_request_fails_alone_and_the_others_are_answered() -> None:
    fast = Doubling()
    served = _served(fast)
    answers = _run(served, lambda: _many(served, [_rows(1.0), _rows(-1.0), _rows(3.0)]))
    assert answers[0] == (200, {"predictions": [2.0]})
    assert answers[1][0] == 500 and answers[1][1]["error"] == "internal error"
    assert answers[2] == (200, {"predictions": [6.0]})
    assert fast.calls[0] == 3 and sorted(fast.calls[1:]) == [1, 1, 1]


@pytest.mark.parametrize(
    ("max_wait_s", "beside"),
    [(2.0, False), (0.05, True)],
    ids=["within-budget", "budget-spent"],
)
def test_requests_arriving_while_the_model_is_busy_wait_at_most_max_latency(
    max_wait_s: float, beside: bool
) -> None:
    fast = Doubling(sleep_s=0.6)
    # Estimated above the inline budget: predicted in the thread pool.
    served = _served(fast, seconds=1.0, batch_max_wait_s=max_wait_s)

    async def go() -> list[float]:
        async def timed(delay: float) -> float:
            await asyncio.sleep(delay)
            started = time.perf_counter()
            status, _ = await call(served, "/invocations", _rows(1.0))
            assert status == 200
            return time.perf_counter() - started

        return list(await asyncio.gather(timed(0.0), timed(0.1), timed(0.1), timed(0.1)))

    latencies = _run(served, go)
    # The three late requests share one call either way.
    assert sorted(fast.calls) == [1, 3]
    late = latencies[1:]
    queued = served.metrics.total().batch_wait_sum  # the three late requests' waits
    if beside:
        # The budget spent, their call started beside the busy one: ~0.05 + 0.6 s.
        assert max(late) < 0.95
        assert queued < 3 * (max_wait_s + 0.1)
    else:
        # They waited for the busy call to end (~0.5 s), then ran: ~1.1 s.
        assert min(late) > 0.95
        assert queued > 3 * 0.4
