"""Build a reference profile once, and store it as JSON (a superset of the bins document).

``build_profile(frame, ...)`` is called by the trainer (on the validation rows, next to the
model) and by ``toque drift profile`` / ``toque drift check`` for a file or a dataset. Per
column it keeps the buckets and the reference counts in them, the missing rate, summary
statistics, and the scores of reference chunks against the whole reference (for ``auto``
thresholds); per profile the PCA of the numeric features (``multivariate``), the
distribution of the model's outputs and, for classifiers, the accuracy per confidence
bucket (``Performance``).

Column types: ints and floats are numeric; booleans, strings (numeric-looking ones too:
an object or string column stays categorical, its values are labels) and pandas
categoricals are categorical; dates and durations are left out (every new date would be an
unseen category). Numeric buckets: with at most ``bins`` distinct values each
value is an edge of its own; otherwise the edges are the minimum, the ``bins - 1`` inner
quantiles (numpy's linear method) and the maximum, deduplicated — the layout of
``toque.core.bins``, so the model server's histograms use the same buckets. Categorical
buckets: the ``top_k`` most frequent values (as strings) and ``__other__``.

``to_json``/``from_json``: ``{"format": 1, "features": {...}, "profile": 1, ...}``, which
``toque.core.bins.parse`` reads as a bins document.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from toque.core import bins as core_bins
from toque.drift import check, current, multivariate, types

PROFILE_VERSION = 1
DISTINCT_LIMIT = 1000  # distinct values are counted exactly up to here
CALIBRATION_SEED = 0
# Chunks smaller than this say more about sampling noise than about the data.
MIN_CHUNK_ROWS = 50
ProfileError = types.ProfileError
# Dates and durations are not profiled: every new date would be an unseen category.
_DATES = frozenset("mM")


def build_profile(
    frame: Any,
    *,
    predictions: Any = None,
    labels: Any = None,
    proba: Any = None,
    classes: Sequence[Any] | None = None,
    bins: int = 20,
    top_k: int = 50,
    chunks: int = 10,
    source: str = "",
) -> types.Profile:
    """The profile of ``frame`` (a DataFrame of model inputs).

    ``predictions``: the model's outputs on the same rows (class labels or values; 2-d
    outputs are not profiled);
    ``proba`` (rows x classes) with ``labels`` (the true classes) and ``classes`` (the
    column order of ``proba``; default 0..k-1) give the ``Performance`` of a classifier.
    """
    if bins < 1 or top_k < 1 or chunks < 1:
        raise types.InputError("bins, top_k and chunks must be at least 1")
    rows = len(frame)
    chunk_of = _chunk_ids(rows, chunks)
    features: dict[str, types.FeatureProfile] = {}
    for name in frame.columns:
        if getattr(frame[name].dtype, "kind", "O") in _DATES:
            continue
        features[str(name)] = _feature(str(name), frame[name], bins, top_k, chunk_of, chunks)
    prediction = None
    # A multi-output model has no one output distribution: no output profile.
    if predictions is not None and np.ndim(predictions) == 1:
        values = pd.Series(np.asarray(predictions))
        if len(values) != rows:
            raise types.InputError(f"{len(values)} predictions for {rows} rows")
        if classes is not None or proba is not None:
            values = values.astype(object)  # class labels are categories, even 0/1
        prediction = _feature("prediction", values, bins, top_k, chunk_of, chunks)
    performance = None
    if proba is not None and labels is not None:
        performance = _performance(proba, labels, classes)
    return types.Profile(
        features=features,
        rows=rows,
        prediction=prediction,
        performance=performance,
        multivariate=multivariate.fit(frame, features, chunk_of, chunks),
        source=source,
    )


def _chunk_ids(rows: int, chunks: int) -> npt.NDArray[np.intp] | None:
    """Each row's calibration chunk: a seeded shuffle cut in ``chunks`` equal parts, so a
    reference sorted by time or by a feature still gives chunks drawn from the whole."""
    if chunks < 2 or rows < chunks * MIN_CHUNK_ROWS:
        return None
    order = np.random.default_rng(CALIBRATION_SEED).permutation(rows)
    chunk_of = np.empty(rows, dtype=np.intp)
    chunk_of[order] = np.arange(rows, dtype=np.intp) * chunks // rows
    return chunk_of


def _feature(
    name: str,
    column: Any,
    bins: int,
    top_k: int,
    chunk_of: npt.NDArray[np.intp] | None,
    chunks: int,
) -> types.FeatureProfile:
    rows = len(column)
    if current.is_numeric(column):
        values = current.as_float(column)
        ordered = np.sort(values[~np.isnan(values)])  # NaN out; +-inf stay (they are values)
        finite = ordered[np.isfinite(ordered)]
        distinct = int(np.count_nonzero(np.diff(ordered)) + 1) if ordered.size else 0
        edges = _edges(finite, distinct, bins)
        codes = current.numeric_codes(values, edges)
        feature = types.FeatureProfile(
            name=name,
            kind="numeric",
            rows=rows,
            missing=0,
            counts=[],
            edges=edges,
            binary=distinct <= 2,
            mean=_finite(finite.mean()) if finite.size else None,
            std=_finite(finite.std()) if finite.size else None,
            minimum=_finite(finite[0]) if finite.size else None,
            maximum=_finite(finite[-1]) if finite.size else None,
            distinct=min(distinct, DISTINCT_LIMIT),
        )
    else:
        raw, names = current.labels(column)
        per_label = np.bincount(raw[raw >= 0], minlength=len(names))
        order = np.argsort(-per_label, kind="stable")  # most frequent first, ties by first seen
        categories = [str(names[i]) for i in order[:top_k]]
        codes = current.categorical_codes(column, categories)
        feature = types.FeatureProfile(
            name=name,
            kind="categorical",
            rows=rows,
            missing=0,
            counts=[],
            categories=categories,
            binary=len(names) <= 2,
            distinct=min(len(names), DISTINCT_LIMIT),
        )
    found = current.tally(codes, len(feature.edges or feature.categories) + 1)
    feature = dataclasses.replace(feature, missing=found.missing, counts=found.counts)
    if chunk_of is None or not sum(found.counts):
        return feature
    return dataclasses.replace(
        feature,
        calibration=_calibrate(feature, codes, chunk_of, chunks),
        chunk_rows=rows // chunks,
    )


def _edges(finite: npt.NDArray[np.float64], distinct: int, bins: int) -> list[float]:
    if not finite.size:
        return []
    if distinct <= bins:
        return [float(v) for v in np.unique(finite)]
    inner = np.quantile(finite, np.arange(1, bins) / bins)
    return [float(v) for v in np.unique(np.concatenate([[finite[0]], inner, [finite[-1]]]))]


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _calibrate(
    feature: types.FeatureProfile,
    codes: npt.NDArray[np.intp],
    chunk_of: npt.NDArray[np.intp],
    chunks: int,
) -> dict[str, list[float]]:
    """Scores of each chunk against the whole reference, per distance method: what
    ``auto`` thresholds are made of (p-value methods need none: they keep their p-value)."""
    buckets = len(feature.counts)
    width = buckets + 1  # the missing code too
    per_chunk = np.bincount(chunk_of * width + codes, minlength=chunks * width)
    table = per_chunk.reshape(chunks, width)[:, :buckets]
    methods = [m for m in check.DISTANCE_METHODS if check.applicable(m, feature)]
    scores: dict[str, list[float]] = {}
    for method in methods:
        found = []
        for row in table:
            if row.sum() == 0:
                continue
            value, _ = check.score_feature(method, feature, row)
            if math.isfinite(value):
                found.append(value)
        if found:
            scores[method] = found
    return scores


def _performance(proba: Any, labels: Any, classes: Sequence[Any] | None) -> types.Performance:
    matrix = np.asarray(proba, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(labels):
        raise types.InputError("proba must be rows x classes, one row per label")
    names = [str(c) for c in (classes if classes is not None else range(matrix.shape[1]))]
    if len(names) != matrix.shape[1]:
        raise types.InputError(f"{len(names)} classes for {matrix.shape[1]} proba columns")
    predicted = np.asarray(names, dtype=object)[np.argmax(matrix, axis=1)]
    truth = pd.Series(np.asarray(labels)).astype(str).to_numpy(dtype=object)
    correct = (predicted == truth).astype(np.float64)
    codes = current.confidence_codes(matrix)
    buckets = len(types.CONFIDENCE_EDGES) + 1
    counts = np.bincount(codes, minlength=buckets + 1)[:buckets]
    hits = np.bincount(codes, weights=correct, minlength=buckets + 1)[:buckets]
    accuracy = [float(h / n) if n else None for h, n in zip(hits, counts, strict=True)]
    return types.Performance(
        classes=names,
        confidence_edges=list(types.CONFIDENCE_EDGES),
        counts=[int(n) for n in counts],
        accuracy=accuracy,
        reference_accuracy=float(correct.mean()) if correct.size else 0.0,
    )


# -- JSON ----------------------------------------------------------------------------------


def to_json(profile: types.Profile) -> bytes:
    """The profile as a bins document (format 1) with the profile's fields added."""
    document = {
        "format": core_bins.FORMAT,
        "features": {name: _feature_json(f) for name, f in profile.features.items()},
        "profile": PROFILE_VERSION,
        "rows": profile.rows,
        "prediction": _feature_json(profile.prediction) if profile.prediction else None,
        "performance": _performance_json(profile.performance),
        "multivariate": profile.multivariate,
        "source": profile.source,
    }
    return json.dumps(document, indent=1, allow_nan=False).encode()


def _feature_json(feature: types.FeatureProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": feature.kind}
    if feature.kind == "numeric":
        out["edges"] = feature.edges
    else:
        out["categories"] = feature.categories
    out.update(
        counts=feature.counts,
        missing=feature.missing,
        rows=feature.rows,
        binary=feature.binary,
        distinct=feature.distinct,
        mean=feature.mean,
        std=feature.std,
        min=feature.minimum,
        max=feature.maximum,
        calibration=feature.calibration,
        chunk_rows=feature.chunk_rows,
    )
    return out


def _performance_json(performance: types.Performance | None) -> dict[str, Any] | None:
    if performance is None:
        return None
    return {
        "classes": performance.classes,
        "confidence_edges": performance.confidence_edges,
        "counts": performance.counts,
        "accuracy": performance.accuracy,
        "reference_accuracy": performance.reference_accuracy,
    }


def from_json(data: str | bytes) -> types.Profile:
    """Read ``to_json``'s output. Raises ``ProfileError`` for anything else, and for a bins
    document without counts (written before drift profiles existed)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProfileError(f"the profile is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != core_bins.FORMAT:
        raise ProfileError("not a drift profile: expected a JSON object with format 1")
    raw = document.get("features")
    if not isinstance(raw, dict):
        raise ProfileError("not a drift profile: it has no features")
    if "profile" not in document or any(
        not isinstance(spec, dict) or "counts" not in spec for spec in raw.values()
    ):
        raise ProfileError(
            "the bins document has no reference counts: the run predates drift profiles; retrain it"
        )
    if document["profile"] != PROFILE_VERSION:
        raise ProfileError(f"unknown profile version {document['profile']!r}")
    try:
        features = {name: _feature_from(name, spec) for name, spec in raw.items()}
        prediction = document.get("prediction")
        return types.Profile(
            features=features,
            rows=int(document["rows"]),
            prediction=_feature_from("prediction", prediction) if prediction else None,
            performance=_performance_from(document.get("performance")),
            multivariate=document.get("multivariate"),
            source=str(document.get("source", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"the profile is damaged: {type(exc).__name__}: {exc}") from exc


def _feature_from(name: str, spec: dict[str, Any]) -> types.FeatureProfile:
    kind = spec["kind"]
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"feature {name!r} has kind {kind!r}")
    edges = [float(e) for e in spec.get("edges", [])] if kind == "numeric" else []
    categories = [str(c) for c in spec.get("categories", [])] if kind == "categorical" else []
    counts = [int(n) for n in spec["counts"]]
    if len(counts) != len(edges or categories) + 1:
        raise ValueError(f"feature {name!r} has {len(counts)} counts for its buckets")
    return types.FeatureProfile(
        name=name,
        kind=kind,
        rows=int(spec["rows"]),
        missing=int(spec["missing"]),
        counts=counts,
        edges=edges,
        categories=categories,
        binary=bool(spec.get("binary", False)),
        mean=_optional(spec.get("mean")),
        std=_optional(spec.get("std")),
        minimum=_optional(spec.get("min")),
        maximum=_optional(spec.get("max")),
        calibration={
            str(method): [float(s) for s in scores]
            for method, scores in (spec.get("calibration") or {}).items()
        },
        chunk_rows=None if spec.get("chunk_rows") is None else int(spec["chunk_rows"]),
        distinct=None if spec.get("distinct") is None else int(spec["distinct"]),
    )


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _performance_from(spec: Any) -> types.Performance | None:
    if not spec:
        return None
    return types.Performance(
        classes=[str(c) for c in spec["classes"]],
        confidence_edges=[float(e) for e in spec["confidence_edges"]],
        counts=[int(n) for n in spec["counts"]],
        accuracy=[None if a is None else float(a) for a in spec["accuracy"]],
        reference_accuracy=float(spec["reference_accuracy"]),
    )
