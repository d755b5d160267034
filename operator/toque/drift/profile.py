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

Fine grid (numeric columns without infinite values), for checks on raw rows: the reference
quantiles at multiples of 1/100 (every distinct value when there are at most 100), with the
serving edges added so each serving bucket is a union of fine ones; the reference rows per
fine bucket (the exact reference CDF at each fine edge) and each fine bucket's mean.
``current.count`` counts current rows into the same grid with per-bucket sums, and
``stats.wasserstein``/``stats.ks`` score them within a few thousandths of scipy on the rows;
the 20 serving buckets alone (the continuous monitor's histograms) bias a shift's
Wasserstein distance by up to half. Each column is sorted once: the bucket counts are
``searchsorted`` differences of the sorted values, the quantiles are read off them.

Calibration (``auto`` thresholds, ``multivariate``): ``chunks`` chunks of a seeded sample of
at most ``CALIBRATION_ROWS`` rows (``chunk_rows`` records the chunk size used; ``check``
widens a threshold for windows smaller than a chunk).

``to_json``/``from_json``: ``{"format": 1, "features": {...}, "profile": 1, ...}``, which
``toque.core.bins.parse`` reads as a bins document (it ignores the fine-grid keys
``fine_edges``, ``fine_counts`` and ``fine_offsets``: each fine mean as its place in the
bucket, 0 at the lower edge, 1 at the upper, to 4 decimals). A profile written before fine
grids has none of them and is checked on its serving buckets. Lists of numbers are written
one per line, not one number per line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
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
CALIBRATION_ROWS = 100_000  # at most this many reference rows are cut into chunks
# Chunks smaller than this say more about sampling noise than about the data.
MIN_CHUNK_ROWS = 50
FINE_BINS = 100  # buckets of the fine grid (numeric features, raw-rows checks)
MEAN_DECIMALS = 4  # fine bucket means, as a fraction of the bucket's width
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
ProfileError = types.ProfileError
# Dates and durations are not profiled: every new date would be an unseen category.
_DATES = frozenset("mM")
# A JSON list of numbers (no strings, no nested lists) and the whitespace inside one.
_NUMBER_LIST = re.compile(r"\[[-+.0-9eE,\s]*(?:(?:null|true|false)[-+.0-9eE,\s]*)*\]")
_SPACE = re.compile(r"\s+")


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
    sample = _sample(rows, chunks)
    features: dict[str, types.FeatureProfile] = {}
    for name in frame.columns:
        if getattr(frame[name].dtype, "kind", "O") in _DATES:
            continue
        features[str(name)] = _feature(str(name), frame[name], bins, top_k, sample)
    prediction = None
    # A multi-output model has no one output distribution: no output profile.
    if predictions is not None and np.ndim(predictions) == 1:
        values = pd.Series(np.asarray(predictions))
        if len(values) != rows:
            raise types.InputError(f"{len(values)} predictions for {rows} rows")
        if classes is not None or proba is not None:
            values = values.astype(object)  # class labels are categories, even 0/1
        prediction = _feature("prediction", values, bins, top_k, sample)
    performance = None
    if proba is not None and labels is not None:
        performance = _performance(proba, labels, classes)
    return types.Profile(
        features=features,
        rows=rows,
        prediction=prediction,
        performance=performance,
        multivariate=multivariate.fit(
            frame,
            features,
            None if sample is None else sample.rows,
            None if sample is None else sample.chunk_of,
            chunks,
        ),
        source=source,
    )


@dataclasses.dataclass(frozen=True)
class _Sample:
    """The calibration rows: ``chunks`` chunks of ``size`` rows, drawn by a seeded shuffle
    (so a reference sorted by time or by a feature still gives chunks drawn from the
    whole); ``rows`` are frame positions, chunk after chunk."""

    rows: npt.NDArray[np.intp]
    chunks: int
    size: int

    @property
    def chunk_of(self) -> npt.NDArray[np.intp]:
        return np.repeat(np.arange(self.chunks, dtype=np.intp), self.size)


def _sample(rows: int, chunks: int) -> _Sample | None:
    """At most ``CALIBRATION_ROWS`` rows: chunks of 10,000 rows already show the noise an
    ``auto`` threshold is made of, and a million rows would cost a pass per column."""
    if chunks < 2 or rows < chunks * MIN_CHUNK_ROWS:
        return None
    rng = np.random.default_rng(CALIBRATION_SEED)
    size = min(rows, CALIBRATION_ROWS) // chunks
    if rows <= CALIBRATION_ROWS:
        picked = rng.permutation(rows)[: chunks * size]
    else:
        picked = rng.choice(rows, size=chunks * size, replace=False)
    # Row order inside a chunk does not matter; ascending positions make the gathers of
    # every column sequential reads.
    ordered = np.sort(picked.reshape(chunks, size), axis=1).reshape(-1)
    return _Sample(np.asarray(ordered, dtype=np.intp), chunks, size)


def _feature(
    name: str, column: Any, bins: int, top_k: int, sample: _Sample | None
) -> types.FeatureProfile:
    if current.is_numeric(column):
        values = current.as_float(column)
        feature = _numeric(name, values, bins)
        chunk_counts = (
            [current.count_numeric(feature, part) for part in _parts(values, sample)]
            if sample is not None
            else []
        )
    else:
        feature, codes = _categorical(name, column, top_k, sample)
        chunk_counts = [current.tally(part, len(feature.counts)) for part in codes]
    if sample is None or not sum(feature.counts):
        return feature
    return dataclasses.replace(
        feature, calibration=_calibrate(feature, chunk_counts), chunk_rows=sample.size
    )


def _parts(values: npt.NDArray[np.float64], sample: _Sample) -> list[npt.NDArray[np.float64]]:
    return list(values[sample.rows].reshape(sample.chunks, sample.size))


def _numeric(name: str, values: npt.NDArray[np.float64], bins: int) -> types.FeatureProfile:
    """Buckets, counts and summary of a numeric column, from its values sorted once (the
    bucket counts are ``searchsorted`` differences of the sorted values, no row lookup)."""
    ascending, valid = current.ordered(values)  # NaN last; +-inf stay (they are values)
    present = ascending[:valid]
    changes = present[1:] != present[:-1]
    distinct = int(np.count_nonzero(changes) + 1) if valid else 0
    infinite = bool(valid) and not (math.isfinite(present[0]) and math.isfinite(present[-1]))
    finite = present[np.isfinite(present)] if infinite else present
    edges = _edges(finite, distinct, bins)
    counts = current.bucket_counts(current.below(ascending, valid, edges), valid)
    feature = types.FeatureProfile(
        name=name,
        kind="numeric",
        rows=int(values.size),
        missing=int(values.size - valid),
        counts=[int(n) for n in counts],
        edges=edges,
        binary=distinct <= 2,
        mean=_finite(finite.mean()) if finite.size else None,
        std=_finite(finite.std()) if finite.size else None,
        minimum=_finite(finite[0]) if finite.size else None,
        maximum=_finite(finite[-1]) if finite.size else None,
        distinct=min(distinct, DISTINCT_LIMIT),
    )
    if infinite or not finite.size:
        return feature  # infinite values have no finite bucket means: no fine grid
    unique = present[np.concatenate([[True], changes])] if distinct <= FINE_BINS else None
    fine_edges = _fine_edges(finite, unique, bins, edges)
    cumulative = current.below(ascending, valid, fine_edges)
    fine_counts = current.bucket_counts(cumulative, valid)
    sums = current.bucket_sums(ascending, valid, cumulative)
    if sums is None:  # cannot happen: every value is finite here
        return feature
    return dataclasses.replace(
        feature,
        fine_edges=[float(e) for e in fine_edges],
        fine_counts=[int(n) for n in fine_counts],
        fine_means=_fine_means(fine_edges, fine_counts, sums),
    )


def _quantiles(ordered: npt.NDArray[np.float64], qs: npt.NDArray[np.float64]) -> Floats:
    """``np.quantile(ordered, qs)`` (linear method, bit for bit) of sorted values, without
    numpy's partition pass over the whole column."""
    last = ordered.size - 1
    virtual = last * qs
    low = np.floor(virtual).astype(np.intp)
    high = np.minimum(low + 1, last)
    gamma = virtual - low
    a, b = ordered[low], ordered[high]
    diff = b - a
    # numpy's lerp: from the nearer end, so the result is monotonic in q
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _edges(finite: npt.NDArray[np.float64], distinct: int, bins: int) -> list[float]:
    if not finite.size:
        return []
    if distinct <= bins:
        return [float(v) for v in np.unique(finite)]
    inner = _quantiles(finite, np.arange(1, bins) / bins)
    return [float(v) for v in np.unique(np.concatenate([[finite[0]], inner, [finite[-1]]]))]


def _fine_edges(
    finite: npt.NDArray[np.float64],
    unique: npt.NDArray[np.float64] | None,
    bins: int,
    edges: list[float],
) -> Floats:
    """The fine grid: every distinct value when there are at most ``FINE_BINS`` (exact
    buckets), else the quantiles at multiples of 1 / (``bins`` x k) >= ``FINE_BINS``
    buckets, minimum and maximum included; always with the serving ``edges`` added, so
    the serving buckets are unions of fine ones. Tied quantiles collapse into one edge."""
    if unique is not None:
        grid = unique
    else:
        steps = bins * max(1, math.ceil(FINE_BINS / bins))
        grid = _quantiles(finite, np.arange(steps + 1) / steps)
    return np.unique(np.concatenate([grid, np.asarray(edges, dtype=np.float64)]))


def _fine_means(edges: Floats, counts: Ints, sums: Floats) -> list[float]:
    """The mean of each fine bucket's reference values, to 1/10,000 of the bucket's width
    (so the JSON keeps 4 decimals per bucket): bucket 0 holds the minimum only, the last
    bucket nothing (the maximum is the last edge); an empty inner bucket gets its middle."""
    low, width = edges[:-1], np.diff(edges)
    inner = counts[1:-1]
    raw = (sums[1:-1] / np.where(inner > 0, inner, 1) - low) / width
    offsets = np.where(inner > 0, np.round(np.clip(raw, 0.0, 1.0), MEAN_DECIMALS), 0.5)
    return _means_from(edges, offsets)


def _means_from(edges: Floats, offsets: Floats) -> list[float]:
    """Fine bucket means from their offsets in the bucket (0: lower edge, 1: upper)."""
    inner = edges[:-1] + offsets * np.diff(edges)
    return [float(edges[0]), *(float(v) for v in inner), float(edges[-1])]


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _categorical(
    name: str, column: Any, top_k: int, sample: _Sample | None
) -> tuple[types.FeatureProfile, list[npt.NDArray[np.intp]]]:
    """The feature and, per calibration chunk, its rows' bucket codes."""
    raw, names = current.labels(column)
    found = np.bincount(raw + 1, minlength=len(names) + 1)  # missing (-1) first
    per_label = found[1:]
    order = np.argsort(-per_label, kind="stable")  # most frequent first, ties by first seen
    top = order[:top_k]
    others = len(top)
    bucket_of = np.full(len(names) + 1, others, dtype=np.intp)
    bucket_of[top] = np.arange(others)
    bucket_of[-1] = others + 1  # code -1 (missing) picks the last entry
    counts = np.bincount(bucket_of[:-1], weights=per_label, minlength=others + 1)
    feature = types.FeatureProfile(
        name=name,
        kind="categorical",
        rows=len(raw),
        missing=int(found[0]),
        counts=[int(n) for n in counts],
        categories=[str(names[i]) for i in top],
        binary=len(names) <= 2,
        distinct=min(len(names), DISTINCT_LIMIT),
    )
    if sample is None:
        return feature, []
    codes = bucket_of[raw[sample.rows]].reshape(sample.chunks, sample.size)
    return feature, list(codes)


def _calibrate(
    feature: types.FeatureProfile, chunk_counts: list[types.FeatureCounts]
) -> dict[str, list[float]]:
    """Scores of each chunk against the whole reference, per distance method: what
    ``auto`` thresholds are made of (p-value methods need none: they keep their p-value).
    Numeric chunks carry fine counts and sums, so wasserstein is scored as a check on raw
    rows scores it."""
    methods = [m for m in check.DISTANCE_METHODS if check.applicable(m, feature)]
    scores: dict[str, list[float]] = {}
    for method in methods:
        found = []
        for part in chunk_counts:
            if not sum(part.counts):
                continue
            value, _ = check.score_feature(
                method, feature, part.counts, fine=part.fine, sums=part.sums
            )
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
    text = json.dumps(document, indent=1, allow_nan=False)
    # One line per list of numbers instead of one line per number: the fine grids are most
    # of a profile, and one number per line would double its size.
    return _NUMBER_LIST.sub(lambda found: _SPACE.sub("", found.group()), text).encode()


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
    if feature.fine_edges:
        edges = np.asarray(feature.fine_edges, dtype=np.float64)
        means = np.asarray(feature.fine_means[1:-1], dtype=np.float64)
        offsets = (means - edges[:-1]) / np.diff(edges)
        out.update(
            fine_edges=feature.fine_edges,
            fine_counts=feature.fine_counts,
            # Means as their place in the bucket, 4 decimals: 6 characters, not 18.
            fine_offsets=[round(float(v), MEAN_DECIMALS) for v in offsets],
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
        **_fine_from(name, spec, edges) if kind == "numeric" else {},
    )


def _fine_from(name: str, spec: dict[str, Any], edges: list[float]) -> dict[str, Any]:
    """The fine grid of a numeric feature; none in a profile written before fine grids."""
    if not spec.get("fine_edges"):
        return {}
    fine = np.asarray([float(e) for e in spec["fine_edges"]], dtype=np.float64)
    counts = [int(n) for n in spec["fine_counts"]]
    offsets = np.asarray([float(v) for v in spec["fine_offsets"]], dtype=np.float64)
    if len(counts) != fine.size + 1 or offsets.size != fine.size - 1:
        raise ValueError(f"feature {name!r} has a fine grid of mismatched lengths")
    if np.any(np.diff(fine) <= 0) or current.positions(fine, edges) is None:
        raise ValueError(f"feature {name!r} has a fine grid that does not hold its edges")
    return {
        "fine_edges": [float(e) for e in fine],
        "fine_counts": counts,
        "fine_means": _means_from(fine, offsets),
    }


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
