"""Drift statistics on bucket counts: psi, ks, chi2, jsd, wasserstein and ztest.

``toque.drift.check`` calls ``score`` and ``drifted`` once per feature per check, with the
reference profile's bucket counts and the current window's counts over the same buckets (and
``default_method`` to pick a method when the rules name none); the profile builder calls
``score`` to calibrate ``auto`` thresholds. There are no rows here, only counts, so every
function is vectorised and O(buckets) — except the exact KS p-value, which scipy computes on at
most 2 x 10,000 values rebuilt from the counts (a few milliseconds, bounded).

Numeric buckets follow Prometheus ``le`` semantics: ``len(counts) == len(edges) + 1``, bucket 0
is ``(-inf, edges[0]]``, bucket i is ``(edges[i-1], edges[i]]``, the last ``(edges[-1], +inf)``.
Categorical buckets are the reference's top categories plus a last "other" bucket.

The methods and their defaults follow Evidently 0.7's DataDriftPreset, so a report reads the
same as one from Evidently on the raw rows; where buckets lose information the docstrings say
what is exact and what is an approximation. On raw rows the check passes a profile's fine grid
(about 100 reference quantiles) with both sides' bucket means (``wasserstein``) and the
current range (``ks``): within a few thousandths of scipy on the rows. Common rules:

- An empty side (no rows at all) raises ``ValueError``: the caller reports InsufficientData.
- Buckets empty on both sides are dropped where they would otherwise count (psi, chi2), as
  Evidently only looks at values present on either side; so all mass in one bucket on both
  sides scores "no drift" (psi 0, jsd 0, chi2 0 with p 1, ks D 0 with p 1).
- A bucket the reference never saw (an unseen category lands in "other", whose reference count
  may be 0) is smoothed, so psi and chi2 stay finite and large; ``unseen`` counts the current
  rows in such buckets for the report's message.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import special, stats  # type: ignore[import-untyped]

METHODS = ("psi", "ks", "chi2", "jsd", "wasserstein", "ztest")
P_VALUE_METHODS = ("ks", "chi2", "ztest")
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,
    "ks": 0.05,
    "chi2": 0.05,
    "ztest": 0.05,
    "jsd": 0.1,
    "wasserstein": 0.1,
}
EPS = 1e-4
SMALL_REFERENCE = 1000  # Evidently: reference rows <= 1000 use p-value tests
FEW_VALUES = 5  # Evidently: a numeric column with <= 5 distinct values is tested as categorical
EXACT_KS_MAX = 10_000  # scipy ks_2samp(method="auto"): exact when both samples are this small

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
TailMeans = tuple[float | None, float | None]
BucketMeans = tuple[npt.ArrayLike, npt.ArrayLike]  # (reference, current), one per bucket


def _as_counts(values: npt.ArrayLike, side: str) -> Ints:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{side} counts must be a non-empty 1-D array")
    integral = array.dtype.kind in "iu" or (
        array.dtype.kind == "f" and bool(np.all(np.isfinite(array) & (array == np.rint(array))))
    )
    if not integral:
        raise ValueError(f"{side} counts must be integers")
    counts = array.astype(np.int64)
    if np.any(counts < 0):
        raise ValueError(f"{side} counts must not be negative")
    if counts.sum() == 0:
        raise ValueError(f"{side} has no rows")
    return counts


def _pair(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[Ints, Ints]:
    ref = _as_counts(ref_counts, "reference")
    cur = _as_counts(cur_counts, "current")
    if ref.shape != cur.shape:
        raise ValueError(f"bucket counts differ in length: {ref.size} != {cur.size}")
    return ref, cur


def _present(ref: Ints, cur: Ints) -> tuple[Ints, Ints]:
    keep = (ref + cur) > 0
    return ref[keep], cur[keep]


def _fill(shares: Floats, eps: float) -> Floats:
    """Zero shares replaced as Evidently 0.7 does: by ``eps``, or by a millionth of the
    smallest non-zero share when that share is itself no larger than ``eps`` (so smoothing
    never outweighs a real bucket)."""
    zero = shares == 0
    if not zero.any():
        return shares
    smallest = float(shares[~zero].min())
    return np.where(zero, smallest / 1e6 if smallest <= eps else eps, shares)


def unseen(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> int:
    """Current rows in buckets where the reference has none (categories it never saw)."""
    ref, cur = _pair(ref_counts, cur_counts)
    return int(cur[ref == 0].sum())


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = EPS) -> float:
    """Population stability index: sum of (ref% - cur%) * ln(ref% / cur%).

    Zero shares are smoothed (``_fill``) on each side, so a bucket the reference never saw
    gives a large finite index; buckets empty on both sides are left out.
    """
    ref, cur = _present(*_pair(ref_counts, cur_counts))
    p = _fill(ref / ref.sum(), eps)
    q = _fill(cur / cur.sum(), eps)
    return float(np.sum((p - q) * np.log(p / q)))


def ks(
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    *,
    edges: Sequence[float] | npt.ArrayLike | None = None,
    current_range: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and two-sided p-value from bucket CDFs.

    The statistic is max |F_ref - F_cur| over the bucket edges: exact when every value sits
    on an edge (a discrete feature whose edges are its values), a lower bound otherwise, as
    the CDFs are not seen inside a bucket. On a profile's fine grid (about 100 reference
    quantiles) the gap moves little inside a bucket, except where the current values start
    or end: ``edges`` with ``current_range=(current minimum, maximum)`` split the buckets
    holding them (reference rows shared in proportion to the width, as a linear CDF), so
    the gap just below the current minimum and at its maximum counts too. The p-value
    follows ``scipy.stats.ks_2samp`` (``method="auto"``) for n reference and m current
    rows: when both are <= 10,000 scipy itself computes the exact p-value on rows rebuilt
    from the counts (one value per bucket, which has the same CDF gaps; scipy's own fallback
    to the asymptotic formula is kept and its warning silenced); otherwise the asymptotic
    ``kstwo.sf(D, round(n*m / (n+m)))``, scipy's formula, through the public distribution.
    """
    if edges is not None and current_range is not None:
        ref_counts, cur_counts = _split_at_range(ref_counts, cur_counts, edges, current_range)
    ref, cur = _pair(ref_counts, cur_counts)
    n, m = int(ref.sum()), int(cur.sum())
    if max(n, m) <= EXACT_KS_MAX:
        index = np.arange(ref.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ks_2samp(np.repeat(index, ref), np.repeat(index, cur))
        return float(result.statistic), float(result.pvalue)
    gap = np.cumsum(ref) / n - np.cumsum(cur) / m
    statistic = float(np.max(np.abs(gap)))
    effective = float(np.round(n * m / (n + m)))
    pvalue = float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))
    return statistic, pvalue


def _split_at_range(
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    edges: Sequence[float] | npt.ArrayLike,
    current_range: tuple[float, float],
) -> tuple[Ints, Ints]:
    """Counts on the edges plus two: just below the current minimum (no current row is
    there yet) and at the current maximum (every current row is)."""
    ref, cur = _pair(ref_counts, cur_counts)
    at = _edges(edges, ref.size)
    low, high = current_range
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError("the current range must be finite, minimum <= maximum")
    for cut in (math.nextafter(low, -math.inf), high):
        bucket = int(np.searchsorted(at, cut, side="left"))
        if bucket == 0 or bucket == at.size or at[bucket] == cut:
            continue  # an open tail (the reference's rows sit on its edge) or an edge already
        share = (cut - at[bucket - 1]) / (at[bucket] - at[bucket - 1])
        ref_part = round(float(ref[bucket]) * share)
        cur_part = 0 if cut < low else int(cur[bucket])
        ref = np.insert(ref, bucket, ref_part)
        ref[bucket + 1] -= ref_part
        cur = np.insert(cur, bucket, cur_part)
        cur[bucket + 1] -= cur_part
        at = np.insert(at, bucket, cut)
    return ref, cur


def chi2(
    ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = EPS
) -> tuple[float, float]:
    """Pearson chi-square of the current counts against the reference proportions.

    Expected counts are the reference shares times the current rows, as Evidently's
    ``chisquare(f_obs, f_exp)``; degrees of freedom = buckets present on either side - 1.
    Zero reference shares (an unseen category) are smoothed (``_fill``) and the shares
    renormalised, so the statistic stays finite and the p-value is ~0. Fewer than two
    buckets present on either side: nothing to compare, (0.0, 1.0).
    """
    ref, cur = _present(*_pair(ref_counts, cur_counts))
    if ref.size < 2:
        return 0.0, 1.0
    shares = ref / ref.sum()
    if np.any(shares == 0):
        shares = _fill(shares, eps)
        shares = shares / shares.sum()
    expected = shares * cur.sum()
    statistic = float(np.sum((cur - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, ref.size - 1))


def jsd(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``)
    between the bucket shares; in [0, sqrt(ln 2)], no smoothing needed."""
    ref, cur = _pair(ref_counts, cur_counts)
    p = ref / ref.sum()
    q = cur / cur.sum()
    mid = (p + q) / 2.0
    divergence = float(np.sum(special.rel_entr(p, mid)) + np.sum(special.rel_entr(q, mid)))
    return math.sqrt(max(divergence, 0.0) / 2.0)


def _edges(edges: Sequence[float] | npt.ArrayLike, buckets: int) -> Floats:
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or array.size + 1 != buckets:
        raise ValueError(f"{buckets} buckets need {buckets - 1} edges, got {array.size}")
    if array.size == 0 or not np.all(np.isfinite(array)) or np.any(np.diff(array) <= 0):
        raise ValueError("edges must be finite and strictly increasing")
    return array


def _tails(tail_means: TailMeans | None, edges: Floats) -> tuple[float, float]:
    low, high = tail_means if tail_means is not None else (None, None)
    low_at = float(edges[0]) if low is None else float(low)
    high_at = float(edges[-1]) if high is None else float(high)
    if not (math.isfinite(low_at) and math.isfinite(high_at)):
        raise ValueError("tail means must be finite")
    if low_at > edges[0] or high_at < edges[-1]:
        raise ValueError(
            "tail means must lie outside the edges (low <= edges[0], high >= edges[-1])"
        )
    return low_at, high_at


def wasserstein(
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    edges: Sequence[float] | npt.ArrayLike,
    ref_std: float,
    *,
    discrete: bool = False,
    tail_means: TailMeans | None = None,
    bucket_means: BucketMeans | None = None,
) -> float:
    """First Wasserstein distance between the bucketed distributions over the reference std.

    W1 = integral of |F_ref - F_cur|. Inside ``(edges[i-1], edges[i]]`` a bucket's mass is
    spread uniformly (linear CDFs, as Prometheus' ``histogram_quantile`` interpolates), or,
    with ``discrete=True``, sits on the bucket's upper edge — exact, equal to
    ``scipy.stats.wasserstein_distance`` on the rows, when every value is an edge. The two
    open tail buckets put their mass on the outermost edge; ``tail_means=(low, high)`` places
    the current side's bucket 0 / last bucket mass at the mean of its values in that bucket
    (<= ``edges[0]`` / > ``edges[-1]``) instead (either may be None; exact when those values
    are all equal). The reference's tails stay on the edges,
    which is exact when the edges include the reference minimum and maximum
    (``toque.core.bins``).

    Evidently divides by ``max(std, 0.001)`` of the reference rows (population std, ddof 0).
    Here a constant reference (``ref_std == 0``) gives 0.0 when the current bucket shares are
    the same (and W1 is 0) and ``inf`` otherwise: any change of a constant feature is drift,
    even current rows beyond the single edge that the edge placement would not move.

    ``bucket_means=(reference means, current means)``, one per bucket on each side (any
    value where a side's bucket is empty), replaces both placements: with the mean of a
    side's values in ``(a, b]`` the integral of its CDF over the bucket is exact,
    ``(b - a) F(b) - share * (mean - a)``, so each bucket contributes the exact
    ``|integral of F_ref - F_cur|`` wherever the gap keeps its sign inside the bucket (on a
    fine grid, every bucket but those where the CDFs cross). Where the gap changes sign
    between the edges, the bucket's area is that of two triangles meeting at the crossing
    that gives the exact signed integral (never less than its absolute value). The open
    tails are exact when the reference's bucket-0 values sit on ``edges[0]`` and its last
    bucket is empty (a profile's fine grid: its minimum and maximum are edges). This is the
    raw-rows path (``current.count`` keeps per-bucket sums).
    """
    ref, cur = _pair(ref_counts, cur_counts)
    at = _edges(edges, ref.size)
    if not math.isfinite(ref_std) or ref_std < 0:
        raise ValueError(f"reference std must be finite and >= 0, got {ref_std}")
    if bucket_means is not None:
        distance = _with_means(ref, cur, at, bucket_means)
        return _normalised(distance, ref, cur, ref_std)
    low, high = _tails(tail_means, at)
    n, m = int(ref.sum()), int(cur.sum())
    # gap[i] = F_ref - F_cur just right of edges[i] (bucket 0 .. i counted).
    gap = np.cumsum(ref[:-1]) / n - np.cumsum(cur[:-1]) / m
    widths = np.diff(at)
    left, right = np.abs(gap[:-1]), np.abs(gap[1:])
    if discrete:
        inner = float(np.sum(left * widths))
    else:
        # |linear| integrated over each bucket: a trapezoid, or two triangles when the gap
        # changes sign inside the bucket.
        crosses = gap[:-1] * gap[1:] < 0
        total = left + right
        safe = np.where(total > 0, total, 1.0)
        area = np.where(crosses, (left**2 + right**2) / (2.0 * safe), total / 2.0)
        inner = float(np.sum(area * widths))
    outer = cur[0] / m * (at[0] - low) + cur[-1] / m * (high - at[-1])
    return _normalised(inner + float(outer), ref, cur, ref_std)


def _normalised(distance: float, ref: Ints, cur: Ints, ref_std: float) -> float:
    if ref_std == 0:
        same_shares = bool(np.array_equal(ref * int(cur.sum()), cur * int(ref.sum())))
        return 0.0 if same_shares and distance == 0 else math.inf
    return distance / ref_std


def _means(values: npt.ArrayLike, buckets: int, side: str) -> Floats:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (buckets,):
        raise ValueError(f"{side} bucket means must be one per bucket ({buckets})")
    return array


def _with_means(ref: Ints, cur: Ints, at: Floats, bucket_means: BucketMeans) -> float:
    """Unnormalised W1 from the shares and the per-bucket means of both sides."""
    p, q = ref / ref.sum(), cur / cur.sum()
    ref_means = _means(bucket_means[0], ref.size, "reference")
    cur_means = _means(bucket_means[1], cur.size, "current")
    # Empty buckets carry no mass: their mean may be anything (even NaN from 0 / 0).
    ref_means = np.where(ref > 0, ref_means, 0.0)
    cur_means = np.where(cur > 0, cur_means, 0.0)
    if not (np.all(np.isfinite(ref_means)) and np.all(np.isfinite(cur_means))):
        raise ValueError("bucket means must be finite")
    gap = np.cumsum(p[:-1]) - np.cumsum(q[:-1])  # F_ref - F_cur at each edge
    low, width = at[:-1], np.diff(at)
    # Distance of each side's mean above the bucket's lower edge, kept inside the bucket
    # (a mean from float sums may stray by an ulp).
    above_ref = np.clip(ref_means[1:-1] - low, 0.0, width)
    above_cur = np.clip(cur_means[1:-1] - low, 0.0, width)
    signed = width * gap[1:] - (p[1:-1] * above_ref - q[1:-1] * above_cur)
    left, right = gap[:-1], gap[1:]
    area = np.abs(signed)
    crosses = left * right < 0
    if crosses.any():
        # Gap linear from `left` to 0 at a + t * width, then to `right`: t fits the signed
        # integral, width * (left * t + right * (1 - t)) / 2.
        step = np.where(crosses, left - right, 1.0)
        t = np.clip((2.0 * signed / width - right) / step, 0.0, 1.0)
        triangles = width * (np.abs(left) * t + np.abs(right) * (1.0 - t)) / 2.0
        area = np.where(crosses, np.maximum(area, triangles), area)
    # Tails: below edges[0] and above edges[-1] each CDF's integral is share * distance of
    # its mean from the edge.
    below = p[0] * max(at[0] - ref_means[0], 0.0) - q[0] * max(at[0] - cur_means[0], 0.0)
    beyond = q[-1] * max(cur_means[-1] - at[-1], 0.0) - p[-1] * max(ref_means[-1] - at[-1], 0.0)
    return float(np.sum(area)) + abs(float(below)) + abs(float(beyond))


def ztest(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float]:
    """Two-proportion z-test on the first bucket's share (the most frequent reference
    category of a binary feature), pooled variance, two-sided p-value — Evidently's z-test.

    z > 0 when the current share is larger. Both shares 0 or both 1 (one value on both sides):
    no evidence of drift, (0.0, 1.0).
    """
    ref, cur = _pair(ref_counts, cur_counts)
    n, m = int(ref.sum()), int(cur.sum())
    hits_ref, hits_cur = int(ref[0]), int(cur[0])
    pooled = (hits_ref + hits_cur) / (n + m)
    if pooled in (0.0, 1.0):
        return 0.0, 1.0
    z = (hits_cur / m - hits_ref / n) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    return z, float(2.0 * special.ndtr(-abs(z)))


def default_method(kind: str, binary: bool, distinct: int | None, reference_rows: int) -> str:
    """The method Evidently 0.7's DataDriftPreset picks for a column.

    Reference rows <= 1000: binary (<= 2 distinct values) "ztest"; categorical, or numeric
    with <= 5 distinct values, "chi2"; other numeric "ks". More rows: numeric with > 5
    distinct values "wasserstein", everything else "jsd". ``distinct`` None: unknown, taken
    as many.
    """
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"unknown feature kind {kind!r}")
    few = distinct is not None and distinct <= FEW_VALUES
    if reference_rows <= SMALL_REFERENCE:
        if binary or (distinct is not None and distinct <= 2):
            return "ztest"
        return "chi2" if kind == "categorical" or few else "ks"
    return "wasserstein" if kind == "numeric" and not few else "jsd"


def score(
    method: str,
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    *,
    edges: Sequence[float] | npt.ArrayLike | None = None,
    ref_std: float | None = None,
    discrete: bool = False,
    tail_means: TailMeans | None = None,
    bucket_means: BucketMeans | None = None,
) -> tuple[float, float | None]:
    """(score, p-value) of ``method``; the p-value is None for the distance methods.

    ``edges`` and ``ref_std`` are needed by "wasserstein" only (as are ``discrete``,
    ``tail_means`` and ``bucket_means``). Raises ValueError for an unknown method or an
    empty side.
    """
    if method == "psi":
        return psi(ref_counts, cur_counts), None
    if method == "jsd":
        return jsd(ref_counts, cur_counts), None
    if method == "wasserstein":
        if edges is None or ref_std is None:
            raise ValueError("wasserstein needs the bucket edges and the reference std")
        distance = wasserstein(
            ref_counts,
            cur_counts,
            edges,
            ref_std,
            discrete=discrete,
            tail_means=tail_means,
            bucket_means=bucket_means,
        )
        return distance, None
    if method == "ks":
        return ks(ref_counts, cur_counts)
    if method == "chi2":
        return chi2(ref_counts, cur_counts)
    if method == "ztest":
        return ztest(ref_counts, cur_counts)
    raise ValueError(f"unknown drift method {method!r}; expected one of {', '.join(METHODS)}")


def drifted(method: str, score: float, p_value: float | None, threshold: float) -> bool:
    """Whether a result crosses its threshold: p < threshold for the p-value methods,
    score >= threshold for the distances (a NaN never drifts)."""
    if method in P_VALUE_METHODS:
        if p_value is None:
            raise ValueError(f"{method} needs a p-value")
        return p_value < threshold
    if method not in METHODS:
        raise ValueError(f"unknown drift method {method!r}")
    return score >= threshold
