"""Feature bins from the training data: written by the trainer, read by the model server.

The run artifact ``toque/feature-bins.json`` (``ARTIFACT_PATH``) is a bins document,
``{"format": 1, "features": {name: {"kind", "edges"|"categories", ...}}}``. The trainer
(``toque.trainer.run``) writes the drift profile of the validation data there
(``toque.drift.profile.to_json``: a superset of the format that adds reference counts,
prediction and performance profiles); runs from before drift profiles hold what
``write_bins`` computes (edges and categories only), and ``parse`` reads both. The server
``parse``s it into per-feature histograms (``toque.serving.metrics``), so the drift monitor
compares live traffic with the training distribution bucket by bucket. ``write_bins`` gives
numeric features up to ``QUANTILES - 1`` distinct inner quantile edges plus the minimum and
maximum, other features the list of their most frequent categories.

``CONFIDENCE_EDGES`` are the buckets of the top-class probability, shared by the server's
``toque_serving_prediction_confidence`` histogram and the drift profile's performance
section (``toque.drift.types`` re-exports them), so both count the same buckets.

Dependency-free: a frame is anything with ``columns`` and ``frame[name]`` giving a column
with ``dtype.kind`` and ``tolist()`` (a pandas DataFrame is one). Quantiles follow numpy's
default (linear) method.
"""

from __future__ import annotations

import collections
import json
import math
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

ARTIFACT_DIR = "toque"
ARTIFACT_FILE = "feature-bins.json"
ARTIFACT_PATH = f"{ARTIFACT_DIR}/{ARTIFACT_FILE}"
QUANTILES = 10
MAX_CATEGORIES = 50
FORMAT = 1
# Prometheus ``le`` upper edges 0.05, 0.10, ..., 0.95, 1.0 (i / 20 is the double nearest to
# each decimal, so the labels render as "0.05", "0.1", ...).
CONFIDENCE_EDGES = tuple(i / 20 for i in range(1, 21))
_NUMERIC_KINDS = frozenset("iuf")  # bool ("b"), strings, dates, categories: categorical


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def _lerp(a: float, b: float, t: float) -> float:
    # numpy's formula, so the edges equal np.quantile(values, q) bit for bit.
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def quantiles(ordered: Sequence[float], qs: Iterable[float]) -> list[float]:
    """``np.quantile(ordered, qs)`` (linear method) of an already sorted, non-empty list."""
    last = len(ordered) - 1
    out = []
    for q in qs:
        position = q * last
        low = math.floor(position)
        high = min(low + 1, last)
        out.append(_lerp(ordered[low], ordered[high], position - low))
    return out


def numeric_edges(values: Iterable[Any]) -> list[float] | None:
    """Sorted distinct edges: the minimum, the inner deciles, the maximum (None: no values)."""
    finite = sorted(
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    )
    if not finite:
        return None
    step = 1.0 / QUANTILES
    inner = quantiles(finite, [i * step for i in range(1, QUANTILES)])
    return sorted({finite[0], *inner, finite[-1]})


def categories(values: Iterable[Any]) -> list[str]:
    """The ``MAX_CATEGORIES`` most frequent values as strings, most frequent first."""
    counts = collections.Counter(str(v) for v in values if not _missing(v))
    return [value for value, _ in counts.most_common(MAX_CATEGORIES)]


def compute_bins(frame: Any) -> dict[str, Any]:
    """``{"format": 1, "features": {name: {"kind": "numeric", "edges": [...]}|...}}``."""
    features: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        kind = getattr(getattr(column, "dtype", None), "kind", "O")
        values = column.tolist()
        if kind not in _NUMERIC_KINDS:
            features[str(name)] = {"kind": "categorical", "categories": categories(values)}
            continue
        edges = numeric_edges(values)
        if edges is not None:
            features[str(name)] = {"kind": "numeric", "edges": edges}
    return {"format": FORMAT, "features": features}


def write_bins(frame: Any, directory: pathlib.Path) -> pathlib.Path:
    """Write ``feature-bins.json`` into ``directory``; log it under ``ARTIFACT_DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ARTIFACT_FILE
    path.write_text(json.dumps(compute_bins(frame), indent=1))
    return path


def parse(text: str | bytes) -> dict[str, dict[str, Any]]:
    """The ``features`` map of a bins document; an unknown format yields no bins."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    features = document.get("features")
    return features if isinstance(features, dict) else {}
