"""Count rows in a profile's buckets: the vectorised core of every drift check.

``count(profile, frame)`` turns a current frame (the rows the model server sampled, a file,
a dataset) into ``CurrentCounts``; ``profile.build_profile`` uses the same bucket functions
on the reference, so reference and current rows land in the same buckets by construction.
Numeric columns: one ``np.searchsorted(edges, values, side="left")`` each (Prometheus
``le``: a value equal to an edge belongs to the bucket that edge closes), then
``np.bincount``. Categorical columns: ``pd.factorize`` and a lookup of the distinct values
(never of the rows) in the profile's category index; values the profile does not name go to
``__other__``. Missing values (None, NaN, NaT, pd.NA) are counted apart. No Python loop
touches rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from toque.drift import types

Codes = npt.NDArray[np.intp]
_NUMERIC_KINDS = frozenset("iuf")  # as ``toque.core.bins``: bool, strings, dates are categorical


def is_numeric(column: Any) -> bool:
    """Whether a column is profiled as numeric: ints and floats only (booleans, strings —
    numeric-looking ones included —, dates and categoricals are categorical)."""
    return getattr(getattr(column, "dtype", None), "kind", "O") in _NUMERIC_KINDS


def as_float(column: Any) -> npt.NDArray[np.float64]:
    """A column as float64 with NaN for missing; strings that are not numbers become NaN."""
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    kind = series.dtype.kind
    if kind not in _NUMERIC_KINDS and kind != "b":
        series = pd.to_numeric(series, errors="coerce")
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def numeric_codes(values: npt.NDArray[np.float64], edges: Sequence[float]) -> Codes:
    """Bucket of each value (``le`` semantics); missing values get ``len(edges) + 1``."""
    bounds = np.asarray(edges, dtype=np.float64)
    codes = np.searchsorted(bounds, values, side="left")
    # NaN sorts after everything, so searchsorted put it in the overflow bucket: move it.
    missing = np.isnan(values)
    if missing.any():
        codes[missing] = bounds.size + 1
    return codes


def labels(column: Any) -> tuple[Codes, pd.Index]:
    """``(codes, labels)``: each row's index into the distinct values as strings
    (-1: missing). Raw values with the same string (1 and "1") share a label."""
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    names = pd.Index(uniques).astype(str)
    merged, distinct = pd.factorize(names)
    if len(distinct) == len(names):
        return np.asarray(codes, dtype=np.intp), pd.Index(distinct)
    lookup = np.append(np.asarray(merged, dtype=np.intp), -1)  # -1 (missing) stays -1
    return lookup[codes], pd.Index(distinct)


def categorical_codes(column: Any, categories: Sequence[str]) -> Codes:
    """Index of each row's value in ``categories``; ``len(categories)`` for any other value
    (``__other__``), ``len(categories) + 1`` for a missing one."""
    codes, names = labels(column)
    k = len(categories)
    mapping = pd.Index(list(categories), dtype=object).get_indexer(names.astype(object))
    mapping = np.where(mapping < 0, k, mapping)
    mapping = np.append(mapping, k + 1)  # code -1 (missing) picks the last entry
    return np.asarray(mapping[codes], dtype=np.intp)


def feature_codes(feature: types.FeatureProfile, column: Any) -> Codes:
    """The bucket codes of one column for one profile feature (missing: the last code)."""
    if feature.kind == "numeric":
        return numeric_codes(as_float(column), feature.edges)
    return categorical_codes(column, feature.categories)


def tally(codes: Codes, buckets: int) -> types.FeatureCounts:
    """Counts per bucket of codes from ``feature_codes`` (``buckets`` = len(counts))."""
    found = np.bincount(codes, minlength=buckets + 1)
    return types.FeatureCounts([int(n) for n in found[:buckets]], int(found[buckets]))


def count_feature(feature: types.FeatureProfile, column: Any) -> types.FeatureCounts:
    """One column counted in one feature's buckets."""
    if feature.kind == "numeric":
        return tally(feature_codes(feature, column), len(feature.counts))
    # Counts only, no per-row codes: value_counts is twice as fast as factorize.
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    found = series.value_counts(dropna=False, sort=False)
    absent = np.asarray(pd.isna(found.index), dtype=bool)
    present = found.index[~absent]
    mapping = pd.Index(list(feature.categories), dtype=object).get_indexer(
        pd.Index(present).astype(str).astype(object)
    )
    k = len(feature.categories)
    mapping = np.where(mapping < 0, k, mapping)
    values = found.to_numpy()
    counts = np.bincount(mapping, weights=values[~absent], minlength=k + 1)
    return types.FeatureCounts([int(n) for n in counts], int(values[absent].sum()))


def confidence_codes(proba: Any) -> Codes:
    """Bucket of each row's top-class probability on ``types.CONFIDENCE_EDGES``."""
    matrix = np.asarray(proba, dtype=np.float64)
    if matrix.ndim != 2:
        raise types.InputError(f"class probabilities must be a 2-d array, not {matrix.ndim}-d")
    top = matrix.max(axis=1)
    codes: Codes = np.searchsorted(np.asarray(types.CONFIDENCE_EDGES), top, side="left")
    codes[np.isnan(top)] = len(types.CONFIDENCE_EDGES) + 1
    return codes


def count(
    profile: types.Profile, frame: Any, *, predictions: Any = None, proba: Any = None
) -> types.CurrentCounts:
    """Count ``frame`` (a DataFrame with every profile feature as a column; others are
    ignored) in the profile's buckets. Raises ``InputError`` naming missing columns."""
    columns = set(frame.columns)
    absent = [name for name in profile.features if name not in columns]
    if absent:
        raise types.InputError(
            f"the current data lacks {len(absent)} profile column(s): {', '.join(absent)}"
        )
    features = {
        name: count_feature(feature, frame[name]) for name, feature in profile.features.items()
    }
    predicted = None
    if predictions is not None and profile.prediction is not None:
        predicted = count_feature(profile.prediction, pd.Series(np.asarray(predictions)))
    confidence = None
    if proba is not None:
        buckets = len(types.CONFIDENCE_EDGES) + 1
        confidence = tally(confidence_codes(proba), buckets).counts
    return types.CurrentCounts(len(frame), features, predicted, confidence)


def empty(profile: types.Profile) -> types.CurrentCounts:
    """No current rows at all (no samples in the window): zero counts in every bucket."""
    features = {
        name: types.FeatureCounts([0] * len(f.counts)) for name, f in profile.features.items()
    }
    return types.CurrentCounts(0, features)
