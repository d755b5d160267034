"""The model server's Prometheus metrics, kept as plain numbers and numpy arrays.

The request path only appends to lists and bumps ints (no prometheus_client objects there);
feature and prediction histograms are computed per batch of buffered rows with one
comparison against a padded edge matrix and one ``bincount``, and rendered by a custom
``Collector`` at scrape time. Names and labels are the contract with the operator's canary
analysis (see ``toque.serving`` docstring) and with the drift monitor. With several worker
processes each worker publishes a snapshot file and a scrape adds its peers' snapshots to
its own numbers. Called by ``toque.serving.app``.

For drift and performance monitoring: ``toque_serving_prediction_confidence`` buckets the
top-class probability of each predicted row (classifiers with probabilities; buckets
``toque.core.bins.CONFIDENCE_EDGES``), from which the operator estimates accuracy without
labels; ``toque_serving_group_predictions`` counts predicted classes per group (each
categorical feature's training categories plus ``__other__``) for bias without labels.
Feedback rows (true labels sent to the feedback endpoint, not counted as traffic) feed
``toque_serving_feedback_rows``, a confusion matrix ``toque_serving_feedback`` and its
per-group split ``toque_serving_feedback_group`` for classifiers, and the summed absolute
and squared errors for regressors.

For the serving path: ``toque_serving_fast_path`` names the path the model is served on
(``forest``, ``boosted``, ``sklearn``, ``pytorch``, ``onnx``, or ``pyfunc`` with the reason:
``unsupported`` or ``refused`` by the load-time check); ``toque_serving_batch_rows`` counts the
rows of each model call (several requests' rows when micro-batched) and
``toque_serving_batch_wait_seconds`` each request's wait in the batch queue;
``toque_serving_batch_max_rows`` is the batch limit in force (1: no micro-batching).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client import core, registry, utils

from toque.core import bins

DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
VALUE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
FLUSH_ROWS = 4096
# Label sets known at load time are exposed at 0 before any traffic, up to this many series
# per family: a series born mid-window loses its first count to increase(), so a class seen
# late reads as rows with no prediction (output drift) or skews a canary's class shares.
ZERO_SERIES_LIMIT = 2048
FLUSH_REQUESTS = 256
LABELS = ["model", "version"]
OTHER = "__other__"
CONFIDENCE_EDGES = bins.CONFIDENCE_EDGES
_CONFIDENCE = np.asarray(CONFIDENCE_EDGES)
# Counts fields keyed by label tuples: JSON has no tuple keys, so they travel as rows.
_KEYED = ("requests", "feedback", "group_predictions", "feedback_group")


@dataclasses.dataclass
class Counts:
    """Everything a scrape reports; ``add`` merges another worker's snapshot."""

    requests: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    duration: list[int] = dataclasses.field(default_factory=list)
    duration_sum: float = 0.0
    rows: int = 0
    classes: dict[str, int] = dataclasses.field(default_factory=dict)
    values: list[int] = dataclasses.field(default_factory=list)
    values_sum: float = 0.0
    features: list[list[int]] = dataclasses.field(default_factory=list)
    feature_sums: list[float] = dataclasses.field(default_factory=list)
    categories: list[list[int]] = dataclasses.field(default_factory=list)
    dropped: int = 0
    confidence: list[int] = dataclasses.field(default_factory=list)
    confidence_sum: float = 0.0
    # (feature, group, class) of every predicted row
    group_predictions: dict[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)
    feedback_rows: int = 0
    # (actual, predicted)
    feedback: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    # (feature, group, actual, predicted)
    feedback_group: dict[tuple[str, str, str, str], int] = dataclasses.field(default_factory=dict)
    feedback_abs_error: float = 0.0
    feedback_squared_error: float = 0.0
    batch_rows: list[int] = dataclasses.field(default_factory=list)
    batch_rows_sum: float = 0.0
    batch_wait: list[int] = dataclasses.field(default_factory=list)
    batch_wait_sum: float = 0.0

    def to_json(self) -> bytes:
        document = dataclasses.asdict(self)
        for name in _KEYED:
            document[name] = [[*key, n] for key, n in getattr(self, name).items()]
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_json(cls, raw: bytes) -> Counts:
        document = orjson.loads(raw)
        for name in _KEYED:
            document[name] = {tuple(row[:-1]): row[-1] for row in document[name]}
        return cls(**document)

    def add(self, other: Counts) -> None:
        for name in ("classes", *_KEYED):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        _add_list(self.duration, other.duration)
        _add_list(self.values, other.values)
        _add_list(self.confidence, other.confidence)
        _add_list(self.batch_rows, other.batch_rows)
        _add_list(self.batch_wait, other.batch_wait)
        self.batch_rows_sum += other.batch_rows_sum
        self.batch_wait_sum += other.batch_wait_sum
        for mine_list, theirs_list in zip(self.features, other.features, strict=False):
            _add_list(mine_list, theirs_list)
        for mine_list, theirs_list in zip(self.categories, other.categories, strict=False):
            _add_list(mine_list, theirs_list)
        _add_list(self.feature_sums, other.feature_sums)
        self.duration_sum += other.duration_sum
        self.values_sum += other.values_sum
        self.confidence_sum += other.confidence_sum
        self.rows += other.rows
        self.dropped += other.dropped
        self.feedback_rows += other.feedback_rows
        self.feedback_abs_error += other.feedback_abs_error
        self.feedback_squared_error += other.feedback_squared_error


def _add_list(mine: list[Any], theirs: list[Any]) -> None:
    for i, n in enumerate(theirs[: len(mine)]):
        mine[i] += n


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the histograms look like: fixed at startup from the model and its bins."""

    model: str
    version: str
    digest: str
    numeric: list[tuple[str, int, list[float]]]  # (feature, column index, edges)
    categorical: list[tuple[str, int, list[str]]]  # (feature, column index, categories)
    value_edges: list[float] | None  # regressors' prediction histogram; None: classifier
    # The model's classes as str, in index order (the compiled forest's class_index, the
    # columns of proba); None: a regressor, or a model that does not say.
    class_labels: list[str] | None
    probabilities: bool = False  # the model yields proba: the confidence histogram
    fast_path: str = "pyfunc"  # forest, sklearn, pytorch, onnx or pyfunc
    fallback: str = ""  # pyfunc's reason: unsupported, or refused by the load-time check
    batch_max_rows: int = 1  # rows one model call may take from several requests


class Metrics:
    """Per-process state; the event loop thread is its only writer (the sampler thread only
    sets ``sampler_dropped``)."""

    def __init__(self, layout: Layout, peers_dir: pathlib.Path | None = None) -> None:
        self.layout = layout
        self.peers_dir = peers_dir
        self.counts = Counts(
            duration=[0] * (len(DURATION_BUCKETS) + 1),
            values=[0] * (len(layout.value_edges or VALUE_BUCKETS) + 1),
            features=[[0] * (len(e) + 1) for _, _, e in layout.numeric],
            feature_sums=[0.0] * len(layout.numeric),
            categories=[[0] * (len(c) + 1) for _, _, c in layout.categorical],
            confidence=[0] * (len(CONFIDENCE_EDGES) + 1),
            batch_rows=[0] * (len(BATCH_ROWS_BUCKETS) + 1),
            batch_wait=[0] * (len(WAIT_BUCKETS) + 1),
        )
        self.sampler_dropped = 0
        self.identity = ""  # the snapshot's file name; empty: this process's pid
        # (inputs, per-row class labels or None) of each request since the last flush
        self._pending: list[tuple[Any, npt.NDArray[np.str_] | None]] = []
        self._pending_rows = 0
        self._pending_classes: list[npt.NDArray[np.intp]] = []
        self._pending_confidence: list[npt.NDArray[np.float64]] = []
        self._pending_requests = 0
        width = max((len(e) for _, _, e in layout.numeric), default=0)
        self._edges = np.full((len(layout.numeric), width), np.inf)
        for i, (_, _, edges) in enumerate(layout.numeric):
            self._edges[i, : len(edges)] = edges
        self._columns = np.asarray([j for _, j, _ in layout.numeric], dtype=np.intp)
        self._category_index = [
            {c: k for k, c in enumerate(cats)} for _, _, cats in layout.categorical
        ]
        self._groups = [[*cats, OTHER] for _, _, cats in layout.categorical]
        classes: list[tuple[str, ...]] = [(c,) for c in layout.class_labels or []]
        groups: list[tuple[str, ...]] = [
            (f, g) for f, _, cats in layout.categorical for g in [*cats, OTHER]
        ]
        self._zero_classes = _zero_series(classes)
        self._zero_groups = _zero_series(groups, classes)
        self._zero_pairs = _zero_series(classes, classes)
        self._zero_feedback_groups = _zero_series(groups, classes, classes)
        self._class_names = (
            np.asarray(layout.class_labels, dtype=str) if layout.class_labels else None
        )

    # The request path -------------------------------------------------------------------
    def request(self, endpoint: str, code: int, seconds: float | None) -> None:
        """Count a request; ``seconds`` None keeps it out of the prediction latency."""
        key = (endpoint, str(code))
        requests = self.counts.requests
        requests[key] = requests.get(key, 0) + 1
        if seconds is not None:
            self.counts.duration[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            self.counts.duration_sum += seconds

    def dispatched(self, rows: int, waits: list[float]) -> None:
        """One model call of ``rows`` rows, and how long each of its requests queued."""
        counts = self.counts
        counts.batch_rows[bisect.bisect_left(BATCH_ROWS_BUCKETS, rows)] += 1
        counts.batch_rows_sum += rows
        for wait in waits:
            counts.batch_wait[bisect.bisect_left(WAIT_BUCKETS, wait)] += 1
            counts.batch_wait_sum += wait

    def batch(
        self,
        inputs: Any,
        rows: int,
        class_index: npt.NDArray[np.intp] | None,
        predictions: npt.NDArray[Any] | None,
        proba: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Buffer one request's inputs (matrix, frame or column vectors) and predictions."""
        self.counts.rows += rows
        self._pending_requests += 1
        if class_index is not None:
            self._pending_classes.append(class_index)
        elif predictions is not None:
            self._predictions(predictions)
        if proba is not None and proba.ndim == 2 and proba.shape[1]:
            self._pending_confidence.append(proba.max(axis=1))
        if self.layout.numeric or self.layout.categorical:
            labels = None
            if self.layout.categorical:
                labels = self._row_classes(class_index, predictions)
            self._pending.append((inputs, labels))
            self._pending_rows += rows
        if self._pending_rows >= FLUSH_ROWS or self._pending_requests >= FLUSH_REQUESTS:
            self.flush()

    def dropped(self, rows: int) -> None:
        self.counts.dropped += rows

    def _row_classes(
        self, class_index: npt.NDArray[np.intp] | None, predictions: npt.NDArray[Any] | None
    ) -> npt.NDArray[np.str_] | None:
        """Each row's predicted class as str, for the per-group counts (None: a regressor)."""
        if class_index is not None and self._class_names is not None:
            return self._class_names[class_index]
        if predictions is None or predictions.ndim != 1:
            return None
        if self.layout.class_labels is None and predictions.dtype.kind == "f":
            return None
        return strings(predictions)

    # Feedback ---------------------------------------------------------------------------
    def feedback_classes(self, inputs: Any, actual: list[str], predicted: list[str]) -> None:
        """Feedback rows of a classifier: the confusion matrix, overall and per group."""
        self.counts.feedback_rows += len(actual)
        pairs = collections.Counter(zip(actual, predicted, strict=True))
        confusion = self.counts.feedback
        for pair, n in pairs.items():
            confusion[pair] = confusion.get(pair, 0) + n
        mine = self.counts.feedback_group
        for i, group in enumerate(self._row_groups(inputs, len(actual))):
            if group is None:
                continue
            feature, names = self.layout.categorical[i][0], self._groups[i]
            triples = collections.Counter(zip(group.tolist(), actual, predicted, strict=True))
            for (g, a, p), n in triples.items():
                key = (feature, names[g], a, p)
                mine[key] = mine.get(key, 0) + n

    def feedback_values(
        self, actual: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]
    ) -> None:
        """Feedback rows of a regressor: summed absolute and squared errors."""
        error = predicted.astype(np.float64) - actual
        self.counts.feedback_rows += int(error.size)
        self.counts.feedback_abs_error += float(np.abs(error).sum())
        self.counts.feedback_squared_error += float(np.square(error).sum())

    def _row_groups(self, inputs: Any, rows: int) -> list[npt.NDArray[np.intp] | None]:
        """Each categorical feature's group index per row (None: the column is absent)."""
        out: list[npt.NDArray[np.intp] | None] = []
        for i, (name, j, _) in enumerate(self.layout.categorical):
            if isinstance(inputs, np.ndarray):
                column = inputs[:, j]
            elif name in inputs:
                column = np.asarray(inputs[name])
            else:
                out.append(None)
                continue
            out.append(self._group_index(i, column) if len(column) == rows else None)
        return out

    def _group_index(self, i: int, column: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
        values, inverse = np.unique(column.astype(str), return_inverse=True)
        index, other = self._category_index[i], len(self._groups[i]) - 1
        lookup = np.asarray([index.get(_category(v), other) for v in values.tolist()], np.intp)
        return lookup[inverse.reshape(-1)]

    # Batch work ---------------------------------------------------------------------------
    def flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        self._pending_requests = 0
        if self._pending_classes:
            index = np.concatenate(self._pending_classes)
            self._pending_classes = []
            names = self.layout.class_labels or []
            for k, n in enumerate(np.bincount(index, minlength=len(names)).tolist()):
                if n:
                    label = names[k]
                    self.counts.classes[label] = self.counts.classes.get(label, 0) + n
        if self._pending_confidence:
            self._confidence(np.concatenate(self._pending_confidence))
            self._pending_confidence = []
        if not pending:
            return
        matrices = [p for p in pending if isinstance(p[0], np.ndarray)]
        frames = [p for p in pending if not isinstance(p[0], np.ndarray)]
        if matrices:
            matrix = np.concatenate([m for m, _ in matrices])
            self._numeric(matrix[:, self._columns] if self._columns.size else np.empty((0, 0)))
            self._categorical(
                [matrix[:, j] for _, j, _ in self.layout.categorical],
                _concatenate([classes for _, classes in matrices]),
            )
        if frames:
            self._frames(frames)

    def _frames(self, pending: list[tuple[Any, npt.NDArray[np.str_] | None]]) -> None:
        """DataFrames and column vectors of many requests, counted in one vectorised pass.

        A pass per request costs ~2 ms for a DataFrame (pandas indexing, a Python loop over
        every feature's buckets): half a second on the event loop every ``FLUSH_REQUESTS``
        requests, which was the p99 of a model served from DataFrames.
        """
        names = [name for name, _, _ in self.layout.numeric]
        if names:
            blocks = []
            for inputs, _ in pending:
                if all(n in inputs for n in names):
                    with contextlib.suppress(ValueError, TypeError):
                        blocks.append(_float_matrix(inputs, names))
            if blocks:
                self._numeric(np.concatenate(blocks))
        for i, (name, _, _) in enumerate(self.layout.categorical):
            columns, labels = [], []
            for inputs, classes in pending:
                if name in inputs:
                    column = np.asarray(inputs[name])
                    columns.append(column)
                    fits = classes is not None and len(classes) == len(column)
                    labels.append(classes if fits else None)
            if columns:
                self._categorical_column(i, np.concatenate(columns), _concatenate(labels))

    def _confidence(self, top: npt.NDArray[np.float64]) -> None:
        top = top[np.isfinite(top)]
        # First edge >= value: Prometheus ``le`` buckets; above 1.0 lands in the overflow.
        index = np.searchsorted(_CONFIDENCE, top, side="left")
        counts = np.bincount(index, minlength=len(CONFIDENCE_EDGES) + 1).tolist()
        for k, n in enumerate(counts):
            self.counts.confidence[k] += n
        self.counts.confidence_sum += float(top.sum())

    def _numeric(self, values: npt.NDArray[np.float64]) -> None:
        if not values.size:
            return
        n_features, width = self._edges.shape
        # Count of edges strictly below a value = its bucket (Prometheus ``le`` semantics).
        bucket = (values[:, :, None] > self._edges[None, :, :]).sum(axis=2)
        flat = bucket + np.arange(n_features) * (width + 1)
        flat[np.isnan(values)] = n_features * (width + 1)  # NaN: counted nowhere
        counts = np.bincount(flat.ravel(), minlength=n_features * (width + 1) + 1)
        counts = counts[:-1].reshape(n_features, width + 1)
        sums = np.nansum(values, axis=0)
        for i, (_, _, edges) in enumerate(self.layout.numeric):
            mine = self.counts.features[i]
            row = counts[i]
            for k in range(len(edges)):
                mine[k] += int(row[k])
            mine[len(edges)] += int(row[len(edges) :].sum())
            self.counts.feature_sums[i] += float(sums[i])

    def _categorical(
        self, columns: list[npt.NDArray[Any]], labels: npt.NDArray[np.str_] | None
    ) -> None:
        for i, column in enumerate(columns):
            self._categorical_column(i, column, labels)

    def _categorical_column(
        self, i: int, column: npt.NDArray[Any], labels: npt.NDArray[np.str_] | None
    ) -> None:
        if not len(column):
            return
        group = self._group_index(i, column)
        mine = self.counts.categories[i]
        for k, n in enumerate(np.bincount(group, minlength=len(mine)).tolist()):
            mine[k] += n
        if labels is not None and len(labels) == len(group):
            self._group_predictions(i, group, labels)

    def _group_predictions(
        self, i: int, group: npt.NDArray[np.intp], labels: npt.NDArray[np.str_]
    ) -> None:
        classes, inverse = np.unique(labels, return_inverse=True)
        width = len(classes)
        counts = np.bincount(group * width + inverse.reshape(-1)).tolist()
        feature, names = self.layout.categorical[i][0], self._groups[i]
        mine = self.counts.group_predictions
        for flat, n in enumerate(counts):
            if n:
                key = (feature, names[flat // width], str(classes[flat % width]))
                mine[key] = mine.get(key, 0) + n

    def _predictions(self, predictions: npt.NDArray[Any]) -> None:
        if predictions.ndim != 1 or not predictions.size:
            return
        if predictions.dtype.kind == "f" and self.layout.class_labels is None:
            edges = self.layout.value_edges or VALUE_BUCKETS
            index = np.searchsorted(np.asarray(edges), predictions, side="left")
            for k, n in enumerate(np.bincount(index, minlength=len(edges) + 1).tolist()):
                self.counts.values[k] += n
            self.counts.values_sum += float(np.nansum(predictions))
        else:
            labels, counts = np.unique(strings(predictions), return_counts=True)
            for label, n in zip(labels.tolist(), counts.tolist(), strict=True):
                self.counts.classes[label] = self.counts.classes.get(label, 0) + n

    # Scrape ---------------------------------------------------------------------------------
    def _identity(self) -> str:
        # Read at publish time: the parent builds this object before it forks the workers.
        return self.identity or str(os.getpid())

    def publish(self) -> None:
        """Write this worker's snapshot for its peers (multi-worker mode only)."""
        if self.peers_dir is None:
            return
        self.flush()
        path = self.peers_dir / f"{self._identity()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(self._own().to_json())
        temporary.replace(path)

    def _own(self) -> Counts:
        own = Counts.from_json(self.counts.to_json())
        own.dropped += self.sampler_dropped
        return own

    def total(self) -> Counts:
        """This worker's counts plus its peers' last snapshots.

        With several workers, successive scrapes land on different workers, and each sees
        its peers only as of their last snapshot. So a worker publishes what it reports
        before it reports it: a later scrape served by a peer then reads at least that,
        and no counter goes down between scrapes (Prometheus would take a decrease for a
        restart and count the whole total again as new traffic).
        """
        if self.peers_dir is not None:
            with contextlib.suppress(OSError):
                self.publish()
        self.flush()
        total = self._own()
        if self.peers_dir is not None:
            for path in self.peers_dir.glob("*.json"):
                if path.stem != self._identity():
                    with contextlib.suppress(OSError, ValueError, TypeError):
                        total.add(Counts.from_json(path.read_bytes()))
        return total

    def collect(self) -> Iterator[core.Metric]:
        layout, counts = self.layout, self.total()
        base = [layout.model, layout.version]
        info = core.GaugeMetricFamily(
            "toque_serving_model_info", "The served model version", labels=[*LABELS, "digest"]
        )
        info.add_metric([*base, layout.digest], 1)
        yield info
        yield from self._serving_path(counts, base)
        requests = core.CounterMetricFamily(
            "toque_serving_requests", "Prediction requests", labels=[*LABELS, "endpoint", "code"]
        )
        for (endpoint, code), n in sorted(counts.requests.items()):
            requests.add_metric([*base, endpoint, code], n)
        yield requests
        duration = core.HistogramMetricFamily(
            "toque_serving_request_duration_seconds", "Prediction request latency", labels=LABELS
        )
        duration.add_metric(base, _buckets(DURATION_BUCKETS, counts.duration), counts.duration_sum)
        yield duration
        rows = core.CounterMetricFamily("toque_serving_rows", "Rows predicted", labels=LABELS)
        rows.add_metric(base, counts.rows)
        yield rows
        dropped = core.CounterMetricFamily(
            "toque_serving_samples_dropped", "Sampled rows not written", labels=LABELS
        )
        dropped.add_metric(base, counts.dropped)
        yield dropped
        if layout.value_edges is not None or not layout.class_labels:
            values = core.HistogramMetricFamily(
                "toque_serving_prediction_value", "Predicted values (regressors)", labels=LABELS
            )
            edges = layout.value_edges or VALUE_BUCKETS
            values.add_metric(base, _buckets(edges, counts.values), counts.values_sum)
            yield values
        classes = core.CounterMetricFamily(
            "toque_serving_predictions", "Predicted rows per class", labels=[*LABELS, "class"]
        )
        seen = {(k,): v for k, v in counts.classes.items()}
        for (label,), n in _with_zeros(self._zero_classes, seen):
            classes.add_metric([*base, label], n)
        yield classes
        if layout.probabilities:
            confidence = core.HistogramMetricFamily(
                "toque_serving_prediction_confidence",
                "Top-class probability of each predicted row (classifiers)",
                labels=LABELS,
            )
            confidence.add_metric(
                base, _buckets(CONFIDENCE_EDGES, counts.confidence), counts.confidence_sum
            )
            yield confidence
        yield from self._bias(counts, base)
        yield from self._feedback(counts, base)
        features = core.HistogramMetricFamily(
            "toque_serving_feature_value",
            "Input feature values, bucketed by training-data quantiles",
            labels=[*LABELS, "feature"],
        )
        for i, (name, _, edges) in enumerate(layout.numeric):
            features.add_metric(
                [*base, name], _buckets(edges, counts.features[i]), counts.feature_sums[i]
            )
        yield features
        categories = core.CounterMetricFamily(
            "toque_serving_feature_category",
            "Input values of categorical features (other: not seen in training)",
            labels=[*LABELS, "feature", "category"],
        )
        for i, (name, _, cats) in enumerate(layout.categorical):
            for k, label in enumerate([*cats, "__other__"]):
                categories.add_metric([*base, name, label], counts.categories[i][k])
        yield categories

    def _serving_path(self, counts: Counts, base: list[str]) -> Iterator[core.Metric]:
        layout = self.layout
        path = core.GaugeMetricFamily(
            "toque_serving_fast_path",
            "The path the model is served on (pyfunc: no fast path, for the reason given)",
            labels=[*LABELS, "path", "reason"],
        )
        path.add_metric([*base, layout.fast_path, layout.fallback], 1)
        yield path
        limit = core.GaugeMetricFamily(
            "toque_serving_batch_max_rows",
            "Rows one model call may take from several requests (1: no micro-batching)",
            labels=LABELS,
        )
        limit.add_metric(base, layout.batch_max_rows)
        yield limit
        rows = core.HistogramMetricFamily(
            "toque_serving_batch_rows", "Rows per model call", labels=LABELS
        )
        rows.add_metric(
            base, _buckets(BATCH_ROWS_BUCKETS, counts.batch_rows), counts.batch_rows_sum
        )
        yield rows
        wait = core.HistogramMetricFamily(
            "toque_serving_batch_wait_seconds",
            "Time a request waited in the batch queue",
            labels=LABELS,
        )
        wait.add_metric(base, _buckets(WAIT_BUCKETS, counts.batch_wait), counts.batch_wait_sum)
        yield wait

    def _bias(self, counts: Counts, base: list[str]) -> Iterator[core.Metric]:
        groups = core.CounterMetricFamily(
            "toque_serving_group_predictions",
            "Predicted rows per class and group of a categorical feature (other: not seen in "
            "training)",
            labels=[*LABELS, "feature", "group", "class"],
        )
        for key, n in _with_zeros(self._zero_groups, counts.group_predictions):
            groups.add_metric([*base, *key], n)
        yield groups

    def _feedback(self, counts: Counts, base: list[str]) -> Iterator[core.Metric]:
        rows = core.CounterMetricFamily(
            "toque_serving_feedback_rows", "Rows sent back with their true label", labels=LABELS
        )
        rows.add_metric(base, counts.feedback_rows)
        yield rows
        # Regressors; a model that does not name its classes is one until it gets class feedback.
        if self.layout.class_labels is None and not counts.feedback:
            for name, total, what in (
                ("abs_error", counts.feedback_abs_error, "absolute"),
                ("squared_error", counts.feedback_squared_error, "squared"),
            ):
                error = core.CounterMetricFamily(
                    f"toque_serving_feedback_{name}",
                    f"Summed {what} error of the feedback rows (regressors)",
                    labels=LABELS,
                )
                error.add_metric(base, total)
                yield error
        confusion = core.CounterMetricFamily(
            "toque_serving_feedback",
            "Feedback rows per true and predicted class (classifiers)",
            labels=[*LABELS, "actual", "predicted"],
        )
        for (actual, predicted), n in _with_zeros(self._zero_pairs, counts.feedback):
            confusion.add_metric([*base, actual, predicted], n)
        yield confusion
        groups = core.CounterMetricFamily(
            "toque_serving_feedback_group",
            "Feedback rows per group of a categorical feature, true and predicted class",
            labels=[*LABELS, "feature", "group", "actual", "predicted"],
        )
        for key, n in _with_zeros(self._zero_feedback_groups, counts.feedback_group):
            groups.add_metric([*base, *key], n)
        yield groups


def _with_zeros(known: list[tuple[str, ...]], counted: Mapping[Any, int]) -> list[tuple[Any, int]]:
    """Every counted key, and every known one at 0."""
    merged = dict.fromkeys(known, 0)
    merged.update(counted)
    return sorted(merged.items())


def _zero_series(*parts: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The label sets of one family known at load time (the product of ``parts``), or none
    when there are more than ``ZERO_SERIES_LIMIT``: a large model's families then start
    with its traffic, as before."""
    total = 1
    for part in parts:
        total *= len(part)
    if not total or total > ZERO_SERIES_LIMIT:
        return []
    out: list[tuple[str, ...]] = [()]
    for part in parts:
        out = [(*head, *tail) for head in out for tail in part]
    return out


def strings(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    # As str(c) of the classes' Python values: "1" for 1, "1.0" for 1.0, "True".
    return values.astype(str)


def _float_matrix(inputs: Any, names: list[str]) -> npt.NDArray[np.float64]:
    """The ``names`` columns of a DataFrame, or of one vector per column, as floats."""
    if isinstance(inputs, dict):  # toque.serving.linear's typed columns
        return np.column_stack([np.asarray(inputs[n], dtype=np.float64) for n in names])
    return np.asarray(inputs[names].to_numpy(dtype=np.float64, na_value=np.nan))


def _concatenate(parts: list[npt.NDArray[np.str_] | None]) -> npt.NDArray[np.str_] | None:
    present = [p for p in parts if p is not None]
    return np.concatenate(present) if present and len(present) == len(parts) else None


def _category(label: str) -> str:
    # Training bins store str() of the values; 1.0 from a float matrix means category "1".
    return label[:-2] if label.endswith(".0") else label


def _buckets(edges: Any, counts: list[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for edge, n in zip(edges, counts, strict=False):
        running += n
        out.append((utils.floatToGoString(edge), float(running)))  # type: ignore[no-untyped-call]
    out.append(("+Inf", float(sum(counts))))
    return out


def registry_for(metrics: Metrics) -> registry.CollectorRegistry:
    """A registry holding only this server's metrics (no default process collectors)."""
    reg = registry.CollectorRegistry(auto_describe=False)
    reg.register(metrics)
    return reg
