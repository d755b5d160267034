"""The model server's ASGI application: routes, body limit, prediction, health, metrics.

A plain ASGI callable rather than a framework: the prediction path parses with orjson,
predicts on the model's fast path (a numpy matrix, or one DataFrame per batch; see
``toque.serving.model``), micro-batches concurrent requests (``toque.serving.batcher``) and
answers with one ``send`` of a pre-sized body, which is what lets one worker out-run
``mlflow models serve`` many times. Endpoints: Open Inference
Protocol v2 (``/v2/...``), MLflow's ``/invocations``, ``/healthz``, ``/readyz`` (503 while
draining), ``/metrics``. Built by ``toque.serving.server``, which drives draining.

``POST /v2/models/{name}[/versions/{v}]/feedback`` takes an infer request plus ``labels``
(one true label per row): the server predicts the rows again (models are deterministic) and
counts them against the labels (``toque.serving.metrics``), never as traffic; a body it
cannot count whole (labels missing, one per row, of the model's classes) is a 4xx and counts
nothing.

The event loop must stay free for the probes: a prediction (of one request, or of a batch)
estimated to take more than ``INLINE_SECONDS`` runs in a thread pool, as does the parsing of
a body over ``INLINE_BODY_BYTES``; small ones stay on the loop, where they are fastest.
pyfunc models always predict in their own single thread, one request at a time. Every prediction
answer carries ``x-request-id`` (the client's, when it sent a sane one); a 500 says only
``internal error`` and that id, and the log has the detail under the same id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import os
import pathlib
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from prometheus_client import exposition

from toque.core import redact
from toque.serving import batcher, metrics, model, payload, sampler, signature

LOG = logging.getLogger("toque.serve")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
_DTYPES = {"f": "FP64", "i": "INT64", "u": "UINT64", "b": "BOOL", "U": "BYTES", "O": "BYTES"}
OUTPUTS = ("predict", "predict_proba")
# Prediction time spent on the event loop (the probes wait that long at most); longer
# predictions go to the thread pool. A hop costs ~0.1 ms and, for work that holds the GIL
# (scikit-learn's Python, pandas), buys only contention with the loop.
INLINE_SECONDS = 0.01
# Request bodies parsed on the event loop; larger ones are parsed in the thread pool.
INLINE_BODY_BYTES = 256 << 10
POOL_THREADS = max(2, min(4, os.cpu_count() or 1))
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


@dataclasses.dataclass(frozen=True)
class Settings:
    model_name: str
    version: str
    digest: str
    max_body_bytes: int = 8 << 20
    sample_rate: float = 0.01
    sample_bucket: str | None = None
    # The ModelVersion's namespace: a segment of the sample keys, so two namespaces serving
    # a model of the same name never mix their rows.
    sample_namespace: str = "default"
    peers_dir: pathlib.Path | None = None  # set with several workers
    sample_batch_rows: int = 1000
    sample_interval_s: float = 30.0
    # Micro-batching: rows one model call may take from several requests (1: off), and the
    # longest a request waits in the queue for a busy model.
    batch_max_rows: int = 1024
    batch_max_wait_s: float = 0.002


class BodyTooLargeError(Exception):
    pass


class App:
    def __init__(
        self,
        settings: Settings,
        predictor: model.Predictor,
        feature_bins: dict[str, dict[str, Any]],
    ) -> None:
        self.settings = settings
        self.predictor = predictor
        self.ready = False
        self.draining = False
        schema = predictor.schema
        self.columns = (
            schema.names
            if schema and schema.named
            else [f"f{i}" for i in range(schema.width if schema else 0)]
        )
        self.metrics = metrics.Metrics(
            _layout(settings, predictor, feature_bins, self.columns), settings.peers_dir
        )
        self.registry = metrics.registry_for(self.metrics)
        self.sampler: sampler.Sampler | None = None
        # pyfunc predictions (one thread: such models need not be thread-safe).
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Large parses and compiled predictions (numpy releases the GIL for most of them).
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.batcher: batcher.Batcher | None = None
        self._drop_lock = threading.Lock()
        self._metadata = orjson.dumps(self._model_metadata())

    # ASGI -----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        s = self.settings
        if s.sample_bucket and s.sample_rate > 0:
            self.sampler = sampler.Sampler(
                s.sample_bucket,
                s.model_name,
                s.version,
                s.sample_rate,
                self.columns,
                self._sampler_dropped,
                batch_rows=s.sample_batch_rows,
                interval_s=s.sample_interval_s,
                namespace=s.sample_namespace,
            )
            self.sampler.start()
        else:
            LOG.info("no --sample-bucket (or rate 0): inputs are not sampled")
        if self.predictor.fast is None:
            # pyfunc models need not be thread-safe: one thread, and the loop stays free.
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "toque-predict")
        self._pool = concurrent.futures.ThreadPoolExecutor(POOL_THREADS, "toque-batch")
        self.batcher = batcher.Batcher(
            self.predictor,
            s.batch_max_rows,
            s.batch_max_wait_s,
            INLINE_SECONDS,
            self._executor or self._pool,
            self._observe,
            self.metrics.dispatched,
        )
        if s.peers_dir is not None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish())
        self.ready = True

    def shutdown(self) -> None:
        self.ready = False
        if self.sampler is not None:
            self.sampler.stop()
        for executor in (self._executor, self._pool):
            if executor is not None:
                executor.shutdown(wait=True)
        self.metrics.publish()

    def _sampler_dropped(self, rows: int) -> None:
        # Called from the request thread (queue full) and the writer thread (upload failed).
        with self._drop_lock:
            self.metrics.sampler_dropped += rows

    async def _publish(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.metrics.publish()
            await asyncio.sleep(1.0)

    # HTTP -----------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST":
            request = _request_headers(scope["headers"])
            endpoint = self._predict_endpoint(path)
            if endpoint is None:
                await _send(send, 404, _error(f"no such endpoint: POST {path}"), request[0])
                return
            started = time.perf_counter()
            status, body = await self._predict(endpoint, request, receive)
            await _send(send, status, body, request[0])
            seconds = time.perf_counter() - started
            # Feedback is not traffic: it stays out of the latency the canary analysis reads.
            self.metrics.request(endpoint, status, None if endpoint == "feedback" else seconds)
            return
        if method not in ("GET", "HEAD"):
            await _send(send, 405, _error(f"method {method} not allowed"))
            return
        await self._get(path, send)

    async def _get(self, path: str, send: Send) -> None:
        ok = self.ready and not self.draining
        name = self.settings.model_name
        if path in ("/healthz", "/v2/health/live", "/ping", "/health"):
            await _send(send, 200, b'{"status":"ok"}')
        elif path in (
            "/readyz",
            "/v2/health/ready",
            f"/v2/models/{name}/ready",
            f"/v2/models/{name}/versions/{self.settings.version}/ready",
        ):
            await _send(send, 200 if ok else 503, b'{"ready":%s}' % (b"true" if ok else b"false"))
        elif path == "/metrics":
            text = exposition.generate_latest(self.registry)
            await _send(
                send,
                200,
                text,
                headers=[(b"content-type", exposition.CONTENT_TYPE_LATEST.encode())],
            )
        elif path in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{self.settings.version}"):
            await _send(send, 200, self._metadata)
        elif path == "/v2":
            await _send(
                send, 200, orjson.dumps({"name": "toque", "version": "2", "extensions": []})
            )
        elif path.startswith("/v2/models/"):
            await _send(send, 404, _error(f"model {path.split('/')[3]!r} is not served here"))
        else:
            await _send(send, 404, _error(f"no such endpoint: GET {path}"))

    def _predict_endpoint(self, path: str) -> str | None:
        if path == "/invocations":
            return "invocations"
        name, version = self.settings.model_name, self.settings.version
        for endpoint in ("infer", "feedback"):
            if path in (
                f"/v2/models/{name}/{endpoint}",
                f"/v2/models/{name}/versions/{version}/{endpoint}",
            ):
                return endpoint
        return None

    async def _predict(
        self, endpoint: str, request: tuple[bytes, bytes | None, bytes | None], receive: Receive
    ) -> tuple[int, bytes]:
        request_id, content_type, content_length = request
        try:
            body = await self._body(content_length, receive)
            if content_type is not None and b"json" not in content_type:
                raise payload.PayloadError(
                    f"content type {content_type.decode(errors='replace')} is not supported; "
                    "send application/json",
                    415,
                )
            if endpoint == "feedback":
                return await self._feedback(body)
            return await self._infer(endpoint, body)
        except BodyTooLargeError:
            return 413, _error(f"request body exceeds {self.settings.max_body_bytes} bytes")
        except payload.PayloadError as error:
            return error.status, _error(str(error))
        except Exception as error:
            if type(error).__name__ == "MlflowException" and "INVALID_PARAMETER_VALUE" in str(
                getattr(error, "error_code", "")
            ):
                # MLflow's schema enforcement: a bad request, and its text says why.
                return 400, _error(redact.redact(str(error)))
            detail = redact.redact("".join(traceback.format_exception(error)))
            LOG.error("prediction failed [request_id=%s]\n%s", request_id.decode(), detail)
            return 500, orjson.dumps({"error": "internal error", "request_id": request_id.decode()})

    async def _parse(self, parse: Callable[..., Any], body: bytes) -> Any:
        predictor = self.predictor
        columns = predictor.input == "columns"
        if len(body) > INLINE_BODY_BYTES and self._pool is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, parse, body, predictor.schema, predictor.numeric, columns
            )
        return parse(body, predictor.schema, predictor.numeric, columns)

    def _inputs(self, batch: payload.Batch) -> Any:
        kind = self.predictor.input
        if kind == "matrix":
            return batch.matrix
        return batch.columns if kind == "columns" else batch.frame

    async def _run(
        self, inputs: Any, rows: int, want_proba: bool, confidence: bool
    ) -> model.Prediction:
        predict = functools.partial(self.predictor.predict, inputs, want_proba, confidence)
        if self._executor is not None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, predict)
        if self._pool is not None and self.predictor.cost(rows) > INLINE_SECONDS:
            return await asyncio.get_running_loop().run_in_executor(self._pool, predict)
        return predict()

    def _observe(self, inputs: Any, rows: int, result: model.Prediction) -> None:
        """Traffic, per model call: histograms, classes, confidence, samples."""
        self.metrics.batch(
            inputs,
            rows,
            result.class_index,
            None if result.class_index is not None else result.values,
            result.proba,
        )
        if self.sampler is not None:
            self.sampler.offer(inputs, result.values, rows)

    async def _infer(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        parse = payload.parse_invocations if endpoint == "invocations" else payload.parse_infer
        batch: payload.Batch = await self._parse(parse, body)
        unknown = [o for o in batch.outputs if o not in OUTPUTS]
        want_proba = "predict_proba" in batch.outputs
        if unknown or (want_proba and not self._has_proba()):
            raise payload.PayloadError(
                f"unknown output(s) {unknown or ['predict_proba']}; this model offers "
                f"{list(OUTPUTS) if self._has_proba() else ['predict']}"
            )
        assert self.batcher is not None, "startup() builds the batcher"
        # Probabilities feed the confidence histogram on every request that has them; the
        # batcher asks for them and counts the traffic (``_observe``).
        result = await self.batcher.predict(self._inputs(batch), batch.rows, want_proba)
        if endpoint == "invocations":
            return 200, _dumps({"predictions": result.values})
        outputs = [
            {
                "name": "predict",
                "datatype": _datatype(result.values),
                "shape": [len(result.values)],
                "data": result.values,
            }
        ]
        if want_proba and result.proba is not None:
            outputs.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": list(result.proba.shape),
                    "data": result.proba.ravel(),
                }
            )
        return 200, _dumps(
            {
                "model_name": self.settings.model_name,
                "model_version": self.settings.version,
                "outputs": outputs,
            }
        )

    async def _feedback(self, body: bytes) -> tuple[int, bytes]:
        batch, labels = await self._parse(payload.parse_feedback, body)
        inputs = self._inputs(batch)
        classes = self.predictor.classes
        # Checked before predicting where the classes are known: a bad body costs nothing.
        actual = None if classes is None else payload.class_labels(labels, classes)
        predicted = await self._run(inputs, batch.rows, False, False)
        values = predicted.values
        if predicted.inputs is not None:
            inputs = predicted.inputs  # the DataFrame the model got, for metrics and samples
        if actual is None and values.ndim == 1 and values.dtype.kind == "f":
            truth = payload.numeric_labels(labels)
            self.metrics.feedback_values(truth, values)
            kept: Any = truth
        else:
            actual = actual if actual is not None else _opaque_labels(labels, values)
            self.metrics.feedback_classes(inputs, actual, metrics.strings(values).tolist())
            kept = labels  # as sent (validated): the same type as the predictions
        if self.sampler is not None:
            self.sampler.feedback(inputs, values, kept, batch.rows)
        return 200, orjson.dumps(
            {
                "model_name": self.settings.model_name,
                "model_version": self.settings.version,
                "rows": batch.rows,
            }
        )

    async def _body(self, content_length: bytes | None, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise BodyTooLargeError
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _has_proba(self) -> bool:
        return self.predictor.classes is not None

    def _model_metadata(self) -> dict[str, Any]:
        schema = self.predictor.schema
        if schema and schema.named:
            inputs = [
                {
                    "name": c.name,
                    "datatype": signature.OIP_TYPES.get(c.type, "BYTES"),
                    "shape": [-1],
                }
                for c in schema.columns
            ]
        else:
            inputs = [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [-1, schema.width if schema else -1],
                }
            ]
        outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
        classes = self.predictor.classes
        if classes is not None:
            outputs[0]["datatype"] = _datatype(classes)
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(classes)]}
            )
        return {
            "name": self.settings.model_name,
            "versions": [self.settings.version],
            "platform": "toque",
            "inputs": inputs,
            "outputs": outputs,
        }


def _layout(
    settings: Settings,
    predictor: model.Predictor,
    feature_bins: dict[str, dict[str, Any]],
    columns: list[str],
) -> metrics.Layout:
    position = {name: i for i, name in enumerate(columns)}
    numeric, categorical = [], []
    for name, spec in feature_bins.items():
        if name not in position:
            continue
        if spec.get("kind") == "numeric" and spec.get("edges"):
            numeric.append((name, position[name], [float(e) for e in spec["edges"]]))
        elif spec.get("kind") == "categorical":
            categorical.append((name, position[name], [str(c) for c in spec["categories"]]))
    compiled, classes = predictor.compiled, predictor.classes
    batch_max_rows = settings.batch_max_rows if predictor.batchable else 1
    labels = value_edges = None
    if classes is not None:
        labels = [str(c) for c in classes.tolist()]
    elif compiled is not None:
        # Regressor: bucket predictions by the quantiles of what its leaves can output.
        leaves = compiled.leaf_value[compiled.children[0::2] == np.arange(compiled.feature.size), 0]
        value_edges = np.unique(np.quantile(leaves, np.linspace(0, 1, 11))).tolist()
    return metrics.Layout(
        settings.model_name,
        settings.version,
        settings.digest,
        numeric,
        categorical,
        value_edges,
        labels,
        probabilities=classes is not None,
        fast_path=predictor.path,
        fallback=predictor.fallback,
        batch_max_rows=max(1, batch_max_rows),
    )


def _opaque_labels(labels: list[Any], predictions: Any) -> list[str]:
    """Labels for a model that does not name its classes: of the kind it predicts."""
    numbers = predictions.dtype.kind in "biuf"
    for i, label in enumerate(labels):
        if isinstance(label, str) == numbers:
            kind = "numbers" if numbers else "strings"
            raise payload.PayloadError(
                f"label {label!r} in row {i} is a {type(label).__name__}; this model predicts "
                f"{kind}"
            )
    return [str(label) for label in labels]


def _datatype(values: Any) -> str:
    return _DTYPES.get(np.asarray(values).dtype.kind, "BYTES")


def _dumps(document: Any) -> bytes:
    try:
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # object arrays (strings, mixed): plain lists
        return orjson.dumps(_plain(document))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _request_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[bytes, bytes | None, bytes | None]:
    """(request id, content type, content length) of a request, in one pass.

    The id is the client's ``x-request-id`` when it is 1-128 safe characters, else a new one.
    """
    request_id = content_type = content_length = None
    for key, value in headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            content_length = value
        elif key == b"x-request-id":
            request_id = value
    if request_id is None or not _REQUEST_ID.fullmatch(request_id):
        request_id = os.urandom(16).hex().encode()
    return request_id, content_type, content_length


async def _send(
    send: Send,
    status: int,
    body: bytes,
    request_id: bytes | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    out = [*(headers or JSON), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        out.append((b"x-request-id", request_id))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})
