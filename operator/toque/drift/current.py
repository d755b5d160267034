"""Count rows in a profile's buckets: the vectorised core of every drift check.

``count(profile, frame)`` turns a current frame (the rows the model server sampled, a file,
a dataset) into ``CurrentCounts``; ``profile.build_profile`` uses the same bucket functions
on the reference, so reference and current rows land in the same buckets by construction.
Numeric columns: the values are sorted once (``np.sort``: a few milliseconds for a million
values, several times faster than a binary search per row), then one
``np.searchsorted(sorted_values, edges, side="right")`` gives the rows <= each edge —
Prometheus ``le``: a value equal to an edge belongs to the bucket that edge closes — and
``np.add.reduceat`` the sum of each bucket's values. A profile with a fine grid
(``FeatureProfile.fine_edges``, a superset of the serving edges) gets its fine counts and
per-bucket sums counted (the exact-W1 path of ``stats.wasserstein``), and the serving
buckets are derived from them; NaN sorts last and is counted as missing. Categorical
columns: ``value_counts`` and a lookup of the distinct values (never of the rows) in the
profile's category index; values the profile does not name go to ``__other__``. Missing
values (None, NaN, NaT, pd.NA) are counted apart. No Python loop touches rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from toque.drift import types

Codes = npt.NDArray[np.intp]
Ints = npt.NDArray[np.int64]
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


def ordered(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], int]:
    """``(sorted values, non-missing count)``: NaN sorts last, so ``[:count]`` are values."""
    ascending = np.sort(values)
    return ascending, int(np.searchsorted(ascending, np.inf, side="right"))


def below(ascending: npt.NDArray[np.float64], valid: int, edges: Any) -> Ints:
    """Rows <= each edge of the sorted values (``ordered``'s result)."""
    bounds = np.asarray(edges, dtype=np.float64)
    return np.asarray(np.searchsorted(ascending[:valid], bounds, side="right"), dtype=np.int64)


def bucket_counts(cumulative: Ints, valid: int) -> Ints:
    """Rows per ``le`` bucket from ``below``'s cumulative counts: ``len(edges) + 1``."""
    return np.diff(cumulative, prepend=0, append=valid)


def bucket_sums(
    ascending: npt.NDArray[np.float64], valid: int, cumulative: Ints
) -> npt.NDArray[np.float64] | None:
    """The sum of each bucket's values; None when a value is infinite (no finite sum)."""
    counts = bucket_counts(cumulative, valid)
    sums = np.zeros(counts.size)
    if not valid:
        return sums
    if not (math.isfinite(ascending[0]) and math.isfinite(ascending[valid - 1])):
        return None
    # reduceat over the non-empty buckets only: their starts rise strictly and stay below
    # ``valid``, so each segment is exactly one bucket's rows (no copy of the values).
    filled = counts > 0
    starts = np.concatenate([[0], cumulative])[filled]
    sums[filled] = np.add.reduceat(ascending[:valid], starts)
    return sums


def positions(fine_edges: Any, edges: Any) -> Ints | None:
    """Index of each serving edge in the fine grid; None when one is missing (a damaged
    profile: its fine grid is then ignored)."""
    fine = np.asarray(fine_edges, dtype=np.float64)
    wanted = np.asarray(edges, dtype=np.float64)
    found = np.searchsorted(fine, wanted).astype(np.int64)
    if np.any(found >= fine.size) or not np.array_equal(fine[found], wanted):
        return None
    return found


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


def tally(codes: Codes, buckets: int) -> types.FeatureCounts:
    """Counts per bucket of bucket codes, the last code missing (``buckets`` = len(counts))."""
    found = np.bincount(codes, minlength=buckets + 1)
    return types.FeatureCounts([int(n) for n in found[:buckets]], int(found[buckets]))


def count_numeric(feature: types.FeatureProfile, values: Any) -> types.FeatureCounts:
    """Float values (NaN: missing) counted in a numeric feature's buckets, and in its fine
    grid with per-bucket sums when it has one."""
    ascending, valid = ordered(np.asarray(values, dtype=np.float64))
    missing = int(ascending.size - valid)
    at = positions(feature.fine_edges, feature.edges) if feature.fine_edges else None
    if at is None:
        coarse = bucket_counts(below(ascending, valid, feature.edges), valid)
        return types.FeatureCounts([int(n) for n in coarse], missing)
    cumulative = below(ascending, valid, feature.fine_edges)
    coarse = bucket_counts(cumulative[at], valid)
    sums = bucket_sums(ascending, valid, cumulative)
    if sums is None:  # an infinite value: no finite sums, the serving buckets only
        return types.FeatureCounts([int(n) for n in coarse], missing)
    fine = bucket_counts(cumulative, valid)
    return types.FeatureCounts(
        [int(n) for n in coarse],
        missing,
        [int(n) for n in fine],
        [float(v) for v in sums],
        float(ascending[0]) if valid else None,
        float(ascending[valid - 1]) if valid else None,
    )


def count_feature(feature: types.FeatureProfile, column: Any) -> types.FeatureCounts:
    """One column counted in one feature's buckets."""
    if feature.kind == "numeric":
        return count_numeric(feature, as_float(column))
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
