"""Sampled inputs and predictions → Parquet files in the data store, off the request path.

The request thread only draws which rows to keep and ``put_nowait``s them on a bounded
queue; when the queue is full the rows are dropped and counted. A daemon thread collects
rows and writes one file per ``batch_rows`` rows or ``interval_s`` seconds to
``s3://<bucket>/serving-samples/<namespace>/<model>/<version>/<yyyy-mm-dd>/<uuid>.parquet``
with the data store's S3 client and settings (``TOQUE_S3_ENDPOINT``, ``AWS_*``): the model
inputs, a ``prediction`` and a ``timestamp`` column. The namespace is the ModelVersion's:
two namespaces may serve models of the same name. Called by ``toque.serving.app``; the drift
monitor reads the files (inputs only).

Feedback rows (inputs sent back with their true label) are kept whole, not sampled, and go
to their own files under a ``feedback`` sub-prefix,
``serving-samples/<namespace>/<model>/<version>/feedback/<yyyy-mm-dd>/<uuid>.parquet``, with
a ``label`` column besides ``prediction`` and ``timestamp``: inference samples never hold
labels, and a drift check that reads traffic skips ``feedback/`` (those rows were already
served once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

LOG = logging.getLogger("toque.serve.sampler")
PREFIX = "serving-samples"
FEEDBACK = "feedback"
# (inputs, predictions, labels or None for inference rows, unix time)
_Item = tuple[Any, Any, Any, float]


def s3_client() -> Any:
    """The data store's client (``toque.data.s3.make_client``), from the pod's environment."""
    from toque.data import config, s3

    settings = config.StoreConfig.from_env()
    # A few writer threads at most; a write is retried by the next batch, not for minutes.
    return s3.make_client(dataclasses.replace(settings, workers=2, read_timeout=20))


class Sampler:
    def __init__(
        self,
        bucket: str,
        model: str,
        version: str,
        rate: float,
        columns: list[str],
        on_drop: Callable[[int], None],
        batch_rows: int = 1000,
        interval_s: float = 30.0,
        max_queued: int = 1000,
        client_factory: Callable[[], Any] = s3_client,
        namespace: str = "default",
    ) -> None:
        self.bucket, self.model, self.version, self.rate = bucket, model, version, rate
        self.namespace = namespace
        self.columns = columns
        self.on_drop = on_drop
        self.batch_rows, self.interval_s = batch_rows, interval_s
        self.files_written = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(max_queued)
        self._rng = np.random.default_rng()
        self._client_factory = client_factory
        self._thread = threading.Thread(target=self._run, name="toque-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, inputs: Any, predictions: Any, rows: int) -> None:
        """Request thread: keep each row with probability ``rate``; never blocks."""
        if rows == 0:
            return
        keep = self._rng.random(rows) < self.rate
        if not keep.any():
            return
        picked: Any
        if isinstance(inputs, np.ndarray):
            picked = inputs[keep]
        elif isinstance(inputs, dict):  # one vector per column (toque.serving.linear)
            picked = {name: vector[keep] for name, vector in inputs.items()}
        else:
            picked = inputs.loc[keep]
        self._put((picked, np.asarray(predictions)[keep], None, time.time()), int(keep.sum()))

    def feedback(self, inputs: Any, predictions: Any, labels: Any, rows: int) -> None:
        """Request thread: keep every feedback row with its true label; never blocks."""
        if rows:
            self._put((inputs, np.asarray(predictions), np.asarray(labels), time.time()), rows)

    def _put(self, item: _Item, rows: int) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.on_drop(rows)

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is buffered (best effort within ``timeout``)."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        client: Any = None
        buffer: list[_Item] = []
        rows, started = 0, time.monotonic()
        while True:
            item: Any = ()  # nothing arrived: only check the flush clock
            wait = max(0.05, started + self.interval_s - time.monotonic())
            with contextlib.suppress(queue.Empty):
                item = self._queue.get(timeout=wait)
            last = item is None
            if item:
                buffer.append(item)
                rows += len(item[1])
            if buffer and (
                last or rows >= self.batch_rows or time.monotonic() - started >= self.interval_s
            ):
                try:
                    client = client or self._client_factory()
                    self._write(client, buffer)
                except Exception as error:  # never let the writer die; count the loss
                    LOG.warning("could not write %d sampled rows: %s", rows, error)
                    self.on_drop(rows)
                buffer, rows = [], 0
            if not buffer:
                started = time.monotonic()
            if last:
                return

    def _write(self, client: Any, buffer: list[_Item]) -> None:
        inference = [item for item in buffer if item[2] is None]
        feedback = [item for item in buffer if item[2] is not None]
        if inference:
            self._write_file(client, inference, "")
        if feedback:
            self._write_file(client, feedback, f"{FEEDBACK}/")

    def _write_file(self, client: Any, items: list[_Item], sub: str) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        frames = []
        for inputs, predictions, labels, at in items:
            frame = (
                pd.DataFrame(inputs, columns=self.columns)
                if isinstance(inputs, np.ndarray)
                else pd.DataFrame(inputs)
                if isinstance(inputs, dict)
                else inputs.reset_index(drop=True).copy()
            )
            frame["prediction"] = predictions if predictions.ndim == 1 else list(predictions)
            if labels is not None:
                frame["label"] = labels
            frame["timestamp"] = pd.Timestamp(at, unit="s", tz="UTC")
            frames.append(frame)
        table = pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        where = f"{PREFIX}/{self.namespace}/{self.model}/{self.version}"
        key = f"{where}/{sub}{day}/{uuid.uuid4().hex}.parquet"
        body = sink.getvalue()
        client.put_object(
            self.bucket, key, io.BytesIO(body), len(body), "application/vnd.apache.parquet"
        )
        self.files_written += 1
        LOG.info("wrote %d sampled rows to s3://%s/%s", table.num_rows, self.bucket, key)
