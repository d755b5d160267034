"""The model server's Prometheus metrics, kept as plain numbers and numpy arrays.

The request path only appends to lists and bumps ints (no prometheus_client objects there);
feature and prediction histograms are computed per batch of buffered rows with one
comparison against a padded edge matrix and one ``bincount``, and rendered by a custom
``Collector`` at scrape time. Names and labels are the contract with the operator's canary
analysis (see ``toque.serving`` docstring). With several worker processes each worker
publishes a snapshot file and a scrape adds its peers' snapshots to its own numbers.
Called by ``toque.serving.app``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from prometheus_client import core, registry, utils

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
FLUSH_ROWS = 4096
LABELS = ["model", "version"]


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

    def to_json(self) -> bytes:
        document = dataclasses.asdict(self)
        document["requests"] = [[e, c, n] for (e, c), n in self.requests.items()]
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_json(cls, raw: bytes) -> Counts:
        document = orjson.loads(raw)
        document["requests"] = {(e, c): n for e, c, n in document["requests"]}
        return cls(**document)

    def add(self, other: Counts) -> None:
        for key, n in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + n
        for label, n in other.classes.items():
            self.classes[label] = self.classes.get(label, 0) + n
        _add_list(self.duration, other.duration)
        _add_list(self.values, other.values)
        for mine, theirs in zip(self.features, other.features, strict=False):
            _add_list(mine, theirs)
        for mine, theirs in zip(self.categories, other.categories, strict=False):
            _add_list(mine, theirs)
        _add_list(self.feature_sums, other.feature_sums)
        self.duration_sum += other.duration_sum
        self.values_sum += other.values_sum
        self.rows += other.rows
        self.dropped += other.dropped


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
    class_labels: list[str] | None  # the compiled forest's classes, in index order


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
        )
        self.sampler_dropped = 0
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._pending_classes: list[npt.NDArray[np.intp]] = []
        width = max((len(e) for _, _, e in layout.numeric), default=0)
        self._edges = np.full((len(layout.numeric), width), np.inf)
        for i, (_, _, edges) in enumerate(layout.numeric):
            self._edges[i, : len(edges)] = edges
        self._columns = np.asarray([j for _, j, _ in layout.numeric], dtype=np.intp)
        self._category_index = [
            {c: k for k, c in enumerate(cats)} for _, _, cats in layout.categorical
        ]

    # The request path -------------------------------------------------------------------
    def request(self, endpoint: str, code: int, seconds: float) -> None:
        key = (endpoint, str(code))
        requests = self.counts.requests
        requests[key] = requests.get(key, 0) + 1
        self.counts.duration[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.counts.duration_sum += seconds

    def batch(
        self,
        inputs: Any,
        rows: int,
        class_index: npt.NDArray[np.intp] | None,
        predictions: npt.NDArray[Any] | None,
    ) -> None:
        """Buffer one request's inputs (matrix or frame) and predictions for ``flush``."""
        self.counts.rows += rows
        if self.layout.numeric or self.layout.categorical:
            self._pending.append(inputs)
            self._pending_rows += rows
        if class_index is not None:
            self._pending_classes.append(class_index)
        elif predictions is not None:
            self._predictions(predictions)
        if self._pending_rows >= FLUSH_ROWS or len(self._pending_classes) >= 256:
            self.flush()

    def dropped(self, rows: int) -> None:
        self.counts.dropped += rows

    # Batch work ---------------------------------------------------------------------------
    def flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if self._pending_classes:
            index = np.concatenate(self._pending_classes)
            self._pending_classes = []
            labels = self.layout.class_labels or []
            for k, n in enumerate(np.bincount(index, minlength=len(labels)).tolist()):
                if n:
                    label = labels[k]
                    self.counts.classes[label] = self.counts.classes.get(label, 0) + n
        if not pending:
            return
        matrices = [p for p in pending if isinstance(p, np.ndarray)]
        frames = [p for p in pending if not isinstance(p, np.ndarray)]
        if matrices:
            self._numeric(
                np.concatenate(matrices)[:, self._columns]
                if self._columns.size
                else np.empty((0, 0))
            )
            self._categorical(
                [np.concatenate(matrices)[:, j] for _, j, _ in self.layout.categorical]
            )
        for frame in frames:
            self._numeric_frame(frame)

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

    def _numeric_frame(self, frame: Any) -> None:
        names = [name for name, _, _ in self.layout.numeric]
        if names and all(n in frame for n in names):
            with contextlib.suppress(ValueError, TypeError):
                self._numeric(frame[names].to_numpy(dtype=np.float64, na_value=np.nan))
        self._categorical(
            [
                frame[n].to_numpy() if n in frame else np.empty(0)
                for n, _, _ in self.layout.categorical
            ]
        )

    def _categorical(self, columns: list[npt.NDArray[Any]]) -> None:
        for i, column in enumerate(columns):
            labels, counts = np.unique(column.astype(str), return_counts=True)
            index, mine = self._category_index[i], self.counts.categories[i]
            for label, n in zip(labels.tolist(), counts.tolist(), strict=True):
                mine[index.get(_category(label), len(mine) - 1)] += n

    def _predictions(self, predictions: npt.NDArray[Any]) -> None:
        if predictions.ndim != 1 or not predictions.size:
            return
        if predictions.dtype.kind == "f":
            edges = self.layout.value_edges or VALUE_BUCKETS
            index = np.searchsorted(np.asarray(edges), predictions, side="left")
            for k, n in enumerate(np.bincount(index, minlength=len(edges) + 1).tolist()):
                self.counts.values[k] += n
            self.counts.values_sum += float(np.nansum(predictions))
        else:
            labels, counts = np.unique(predictions.astype(str), return_counts=True)
            for label, n in zip(labels.tolist(), counts.tolist(), strict=True):
                self.counts.classes[label] = self.counts.classes.get(label, 0) + n

    # Scrape ---------------------------------------------------------------------------------
    def publish(self) -> None:
        """Write this worker's snapshot for its peers (multi-worker mode only)."""
        if self.peers_dir is None:
            return
        self.flush()
        path = self.peers_dir / f"{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(self._own().to_json())
        temporary.replace(path)

    def _own(self) -> Counts:
        own = Counts.from_json(self.counts.to_json())
        own.dropped += self.sampler_dropped
        return own

    def total(self) -> Counts:
        self.flush()
        total = self._own()
        if self.peers_dir is not None:
            for path in self.peers_dir.glob("*.json"):
                if path.stem != str(os.getpid()):
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
        for label, n in sorted(counts.classes.items()):
            classes.add_metric([*base, label], n)
        yield classes
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
