"""Adaptive micro-batching: concurrent small requests become one vectorised prediction.

A request's parsed rows join a queue on the event loop. The queue is dispatched as one
call at the loop's next turn, so every request that arrived together (parsed in the same
turn, or while the loop was busy predicting the last batch) shares the call, and a lone
request waits for nothing. A batch holds at most ``max_rows`` rows (a full queue goes at
once); while a batch runs in the thread pool the queue waits for it, but never longer
than ``max_wait_s`` after its oldest request arrived: then the next batch starts beside
it. A batch whose estimated cost (``Predictor.cost``) fits ``inline_s`` runs on the loop,
where small calls are fastest; a larger one runs in the pool, so the probes stay answered.

Only models whose answers do not depend on the batch are batched (``Predictor.batching``,
checked at load by ``toque.serving.exact``), or only their transforms, the final step then
called on each request's rows (the batch's ``bounds``); requests of other models, and
requests of ``max_rows`` rows or more, are predicted alone, the same way. When a batch
fails, each of its requests is predicted alone, so one bad request fails only itself. Every
call is reported to ``observe`` (inputs, rows, prediction) for the metrics and the sampler,
and its size and each request's queue wait to ``measured``. Built and driven by
``toque.serving.app``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from toque.serving import model

LOG = logging.getLogger("toque.serve")


@dataclasses.dataclass
class _Request:
    inputs: Any
    rows: int
    want_proba: bool
    future: asyncio.Future[model.Prediction]
    arrived: float
    dispatched: float = 0.0  # when its batch went to the model: the queue wait ends


class Batcher:
    def __init__(
        self,
        predictor: model.Predictor,
        max_rows: int,
        max_wait_s: float,
        inline_s: float,
        pool: concurrent.futures.Executor | None,
        observe: Callable[[Any, int, model.Prediction], None],
        measured: Callable[[int, list[float]], None],
    ) -> None:
        self.predictor = predictor
        self.enabled = predictor.batchable and max_rows > 1
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.inline_s = inline_s
        self.pool = pool
        self.observe = observe
        self.measured = measured
        self.confidence = predictor.classes is not None
        self._queue: list[_Request] = []
        self._queued_rows = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._running = 0  # batches in the pool

    async def predict(self, inputs: Any, rows: int, want_proba: bool) -> model.Prediction:
        """The prediction of one request's rows, in a batch with others where it can be."""
        if not self.enabled or rows >= self.max_rows or rows == 0:
            result = await self._call(inputs, rows, want_proba)
            self.measured(rows, [0.0])
            self.observe(result.inputs if result.inputs is not None else inputs, rows, result)
            return result
        loop = asyncio.get_running_loop()
        request = _Request(inputs, rows, want_proba, loop.create_future(), time.perf_counter())
        self._queue.append(request)
        self._queued_rows += rows
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await request.future

    async def _call(self, inputs: Any, rows: int, want_proba: bool) -> model.Prediction:
        predict = self.predictor.predict
        if self.pool is not None and self.predictor.cost(rows) > self.inline_s:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self.pool, predict, inputs, want_proba, self.confidence
            )
        return predict(inputs, want_proba, self.confidence)

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            waited = time.perf_counter() - self._queue[0].arrived
            if self._running and waited < self.max_wait_s and self._queued_rows < self.max_rows:
                # The model is busy in the pool: the queue grows meanwhile, within budget.
                self._timer = asyncio.get_running_loop().call_later(
                    self.max_wait_s - waited, self._flush
                )
                return
            batch = self._take()
            rows = sum(r.rows for r in batch)
            if self.pool is not None and self.predictor.cost(rows) > self.inline_s:
                self._running += 1
                asyncio.get_running_loop().create_task(self._in_pool(batch, rows))
            else:
                self._settle(batch, rows, self._predict_batch(batch, rows))

    def _take(self) -> list[_Request]:
        batch: list[_Request] = []
        rows = 0
        now = time.perf_counter()
        while self._queue and (not batch or rows + self._queue[0].rows <= self.max_rows):
            request = self._queue.pop(0)
            request.dispatched = now
            batch.append(request)
            rows += request.rows
        self._queued_rows -= rows
        return batch

    async def _in_pool(self, batch: list[_Request], rows: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, self._predict_batch, batch, rows)
            self._settle(batch, rows, result)
        finally:
            self._running -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush)

    def _predict_batch(
        self, batch: list[_Request], rows: int
    ) -> tuple[Any, model.Prediction] | BaseException:
        inputs = batch[0].inputs if len(batch) == 1 else _concatenate([r.inputs for r in batch])
        want_proba = any(r.want_proba for r in batch)
        bounds, start = [], 0
        for request in batch:
            bounds.append((start, start + request.rows))
            start += request.rows
        try:
            return inputs, self.predictor.predict(inputs, want_proba, self.confidence, bounds)
        except Exception as error:
            return error

    def _settle(
        self,
        batch: list[_Request],
        rows: int,
        outcome: tuple[Any, model.Prediction] | BaseException,
    ) -> None:
        if isinstance(outcome, BaseException):
            if len(batch) == 1:
                _resolve(batch[0].future, outcome)
                return
            # One bad request must not fail the others: each alone, in a task of its own.
            for request in batch:
                task = asyncio.get_running_loop().create_task(
                    self._call(request.inputs, request.rows, request.want_proba)
                )
                task.add_done_callback(functools.partial(self._alone, request=request))
            return
        inputs, result = outcome
        start = 0
        for request in batch:
            stop = start + request.rows
            _resolve(request.future, _part(result, start, stop))
            start = stop
        self._report(rows, [r.dispatched - r.arrived for r in batch], inputs, result)

    def _report(self, rows: int, waits: list[float], inputs: Any, result: model.Prediction) -> None:
        # Called from loop callbacks, where an exception would go nowhere: log it.
        try:
            self.measured(rows, waits)
            self.observe(result.inputs if result.inputs is not None else inputs, rows, result)
        except Exception:
            LOG.exception("could not count a prediction in the metrics")

    def _alone(self, task: asyncio.Task[model.Prediction], *, request: _Request) -> None:
        error = task.exception()
        if error is not None:
            _resolve(request.future, error)
            return
        result = task.result()
        _resolve(request.future, result)
        self._report(request.rows, [request.dispatched - request.arrived], request.inputs, result)


def _resolve(
    future: asyncio.Future[model.Prediction], outcome: model.Prediction | BaseException
) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _concatenate(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, dict):
        return {name: np.concatenate([p[name] for p in parts]) for name in first}
    return pd.concat(parts, ignore_index=True)


def _part(result: model.Prediction, start: int, stop: int) -> model.Prediction:
    return model.Prediction(
        result.values[start:stop],
        None if result.class_index is None else result.class_index[start:stop],
        None if result.proba is None else result.proba[start:stop],
    )
