"""The drift statistics on bucket counts agree with scipy (or a hand computation) on rows."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import integrate, spatial, stats  # type: ignore[import-untyped]

from toque.drift import stats as drift_stats

RNG_SEED = 20240610


def _buckets(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Rows counted into Prometheus ``le`` buckets: value v goes to the first edge >= v."""
    edges = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def _rows(seed: int, values: list[float], n: int, weights: list[float]) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    p = np.asarray(weights) / np.sum(weights)
    return rng.choice(np.asarray(values, dtype=np.float64), size=n, p=p)


# -- constants and method choice ---------------------------------------------------------------


def test_every_method_has_a_default_threshold_and_p_value_methods_are_methods() -> None:
    assert set(drift_stats.DEFAULT_THRESHOLDS) == set(drift_stats.METHODS)
    assert set(drift_stats.P_VALUE_METHODS) <= set(drift_stats.METHODS)
    assert drift_stats.DEFAULT_THRESHOLDS["psi"] == 0.2
    assert drift_stats.DEFAULT_THRESHOLDS["wasserstein"] == 0.1


@pytest.mark.parametrize(
    ("kind", "binary", "distinct", "rows", "expected"),
    [
        ("numeric", False, 100, 1000, "ks"),
        ("numeric", False, None, 10, "ks"),
        ("numeric", False, 6, 1000, "ks"),
        ("numeric", False, 5, 1000, "chi2"),
        ("numeric", False, 3, 1000, "chi2"),
        ("numeric", True, 2, 1000, "ztest"),
        ("numeric", False, 100, 1001, "wasserstein"),
        ("numeric", False, None, 50_000, "wasserstein"),
        ("numeric", False, 5, 1001, "jsd"),
        ("numeric", True, 2, 1001, "jsd"),
        ("categorical", False, 30, 1000, "chi2"),
        ("categorical", False, 3, 200, "chi2"),
        ("categorical", True, 2, 1000, "ztest"),
        ("categorical", False, 2, 1000, "ztest"),
        ("categorical", False, 30, 1001, "jsd"),
        ("categorical", True, 2, 1001, "jsd"),
    ],
)
def test_default_method_follows_evidently_by_rows_kind_and_distinct_values(
    kind: str, binary: bool, distinct: int | None, rows: int, expected: str
) -> None:
    assert drift_stats.default_method(kind, binary, distinct, rows) == expected


def test_default_method_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        drift_stats.default_method("text", False, 10, 100)


# -- ks ----------------------------------------------------------------------------------------


def test_ks_equals_scipy_asymptotic_on_integer_rows_at_the_edges() -> None:
    values = [float(v) for v in range(12)]
    ref = _rows(1, values, 12_000, [1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1])
    cur = _rows(2, values, 15_001, [1, 2, 3, 4, 5, 6, 7, 5, 4, 3, 2, 1])
    edges = values
    statistic, p_value = drift_stats.ks(_buckets(ref, edges), _buckets(cur, edges))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert statistic == float(expected.statistic)
    assert p_value == pytest.approx(float(expected.pvalue), rel=1e-6)
    # both sizes above 10,000: scipy's "auto" takes the same asymptotic path
    assert p_value == pytest.approx(float(stats.ks_2samp(ref, cur).pvalue), rel=1e-6)
    assert 0.0 < p_value < 1.0


def test_ks_equals_scipy_exact_for_small_samples() -> None:
    values = [-2.0, 0.5, 1.0, 4.0, 9.0]
    ref = _rows(3, values, 300, [1, 2, 3, 2, 1])
    cur = _rows(4, values, 250, [1, 1, 3, 3, 2])
    statistic, p_value = drift_stats.ks(_buckets(ref, values), _buckets(cur, values))
    expected = stats.ks_2samp(ref, cur, method="exact")
    assert statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert p_value == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_ks_statistic_is_the_largest_gap_between_bucket_cdfs() -> None:
    # F_ref = .25, .5, 1 and F_cur = .5, .75, 1 at the edges; scaled up to the asymptotic path
    statistic, _ = drift_stats.ks(np.array([1, 1, 2]) * 6000, np.array([2, 1, 1]) * 6000)
    assert statistic == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize("scale", [1, 1000])
def test_ks_all_mass_in_one_bucket_on_both_sides_is_no_drift(scale: int) -> None:
    assert drift_stats.ks([0, 20 * scale, 0], [0, 30 * scale, 0]) == (0.0, 1.0)


# -- wasserstein -------------------------------------------------------------------------------


def test_wasserstein_discrete_equals_scipy_over_reference_std_on_rows_at_the_edges() -> None:
    edges = [-3.0, -1.0, 0.0, 2.5, 7.0, 10.0]
    ref = _rows(5, edges, 4000, [1, 3, 5, 4, 2, 1])
    cur = _rows(6, edges, 3000, [2, 2, 3, 5, 4, 1])
    std = float(np.std(ref))
    distance = drift_stats.wasserstein(
        _buckets(ref, edges), _buckets(cur, edges), edges, std, discrete=True
    )
    expected = stats.wasserstein_distance(ref, cur) / std
    assert distance == pytest.approx(expected, rel=1e-12)
    assert distance > 0


def test_wasserstein_tail_means_place_current_tail_rows_exactly() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    ref = _rows(7, edges, 1000, [1, 2, 2, 1])
    # bucket 0 and the last bucket of the current hold one value each (none at edges[0]), so
    # their means are those values and the bucketed distance is exact
    inside = _rows(8, edges, 900, [0, 1, 2, 2])
    cur = np.concatenate([inside, np.full(40, -2.5), np.full(60, 4.5)])
    std = float(np.std(ref))
    ref_counts, cur_counts = _buckets(ref, edges), _buckets(cur, edges)
    with_tails = drift_stats.wasserstein(
        ref_counts, cur_counts, edges, std, discrete=True, tail_means=(-2.5, 4.5)
    )
    assert with_tails == pytest.approx(stats.wasserstein_distance(ref, cur) / std, rel=1e-12)
    at_edges = drift_stats.wasserstein(ref_counts, cur_counts, edges, std, discrete=True)
    assert at_edges < with_tails


def _piecewise_linear_w1(
    ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64], edges: list[float]
) -> float:
    """Integral of |F_ref - F_cur| with CDFs interpolated linearly between the edges."""
    f_ref = np.cumsum(ref[:-1]) / ref.sum()
    f_cur = np.cumsum(cur[:-1]) / cur.sum()

    def gap(x: float) -> float:
        return abs(float(np.interp(x, edges, f_ref) - np.interp(x, edges, f_cur)))

    value, _ = integrate.quad(gap, edges[0], edges[-1], points=edges[1:-1], limit=500)
    return float(value)


def test_wasserstein_uniform_within_buckets_equals_the_integral_of_linear_cdfs() -> None:
    edges = [0.0, 1.0, 3.0, 4.0, 8.0, 9.5]
    ref = np.array([5, 40, 10, 30, 20, 7, 0])
    cur = np.array([0, 10, 50, 10, 35, 20, 3])
    distance = drift_stats.wasserstein(ref, cur, edges, 2.0)
    assert distance == pytest.approx(_piecewise_linear_w1(ref, cur, edges) / 2.0, rel=1e-8)


def test_wasserstein_uniform_bucket_against_a_point_is_half_its_width() -> None:
    # reference uniform on (0, 1], current all at 0: W1 = 1/2; discrete puts both on edges: 1
    ref, cur, edges = [0, 10, 0], [10, 0, 0], [0.0, 1.0]
    assert drift_stats.wasserstein(ref, cur, edges, 0.5) == pytest.approx(1.0, rel=1e-15)
    assert drift_stats.wasserstein(ref, cur, edges, 0.5, discrete=True) == pytest.approx(2.0)


def test_wasserstein_same_shares_is_zero() -> None:
    assert drift_stats.wasserstein([2, 4, 6, 0], [20, 40, 60, 0], [1.0, 2.0, 3.0], 0.7) == 0.0


def test_wasserstein_constant_reference_is_zero_when_identical_and_infinite_otherwise() -> None:
    ref = [100, 0]
    assert drift_stats.wasserstein(ref, [7, 0], [3.0], 0.0) == 0.0
    assert drift_stats.wasserstein(ref, [7, 1], [3.0], 0.0) == math.inf
    assert drift_stats.wasserstein(ref, [7, 0], [3.0], 0.0, tail_means=(2.0, None)) == math.inf


@pytest.mark.parametrize(
    ("edges", "std", "tails", "message"),
    [
        ([1.0], 1.0, None, "edges"),
        ([2.0, 1.0], 1.0, None, "increasing"),
        ([1.0, float("nan")], 1.0, None, "finite"),
        ([1.0, 2.0], -1.0, None, "std"),
        ([1.0, 2.0], float("nan"), None, "std"),
        ([1.0, 2.0], 1.0, (1.5, None), "tail"),
        ([1.0, 2.0], 1.0, (None, 1.5), "tail"),
    ],
)
def test_wasserstein_rejects_bad_edges_std_or_tail_means(
    edges: list[float], std: float, tails: drift_stats.TailMeans | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        drift_stats.wasserstein([1, 2, 3], [3, 2, 1], edges, std, tail_means=tails)


def _means(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The mean of each ``le`` bucket's values (0 where a bucket is empty)."""
    values = np.asarray(values, dtype=np.float64)
    index = np.searchsorted(np.asarray(edges), values, side="left")
    buckets = len(np.asarray(edges)) + 1
    sums = np.bincount(index, weights=values, minlength=buckets)
    counts = np.bincount(index, minlength=buckets)
    return np.asarray(sums / np.maximum(counts, 1), dtype=np.float64)


@pytest.mark.parametrize("shift", [0.3, 4.0, -4.0])
def test_wasserstein_bucket_means_equal_scipy_when_the_gap_keeps_its_sign(shift: float) -> None:
    # current = reference shifted: F_cur stays on one side of F_ref, so every bucket's
    # integral is exact; a shift of 4 std puts most current rows beyond the reference's range
    ref = np.random.default_rng(20).gamma(2.0, size=5000)
    cur = ref + shift * ref.std()
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 41)))
    distance = drift_stats.wasserstein(
        _buckets(ref, edges),
        _buckets(cur, edges),
        edges,
        float(ref.std()),
        bucket_means=(_means(ref, edges), _means(cur, edges)),
    )
    expected = stats.wasserstein_distance(ref, cur) / ref.std()
    assert distance == pytest.approx(expected, rel=1e-9)
    assert distance == pytest.approx(abs(shift), rel=1e-9)


def test_wasserstein_bucket_means_where_the_cdfs_cross_inside_a_bucket() -> None:
    # reference: 0.3 at 0, 0.2 uniform on (0, 1], 0.5 at 2; current: 0.8 uniform on (0, 1],
    # 0.2 at 2. The gap falls linearly from 0.3 to -0.3 across (0, 1] (two triangles, 0.15),
    # then stays at -0.3 up to 2 (0.3): W1 = 0.45
    means = ([0.0, 0.5, 2.0, 0.0], [0.0, 0.5, 2.0, 0.0])
    distance = drift_stats.wasserstein(
        [3, 2, 5, 0], [0, 8, 2, 0], [0.0, 1.0, 2.0], 1.0, bucket_means=means
    )
    assert distance == pytest.approx(0.45, rel=1e-12)


def test_wasserstein_bucket_means_must_be_one_finite_value_per_bucket() -> None:
    with pytest.raises(ValueError, match="one per bucket"):
        drift_stats.wasserstein([1, 2, 3], [3, 2, 1], [1.0, 2.0], 1.0, bucket_means=([1.0], [1.0]))
    with pytest.raises(ValueError, match="finite"):
        drift_stats.wasserstein(
            [1, 2, 3], [3, 2, 1], [1.0, 2.0], 1.0, bucket_means=([1, 1.5, 2], [1, np.inf, 2])
        )


def test_ks_current_range_finds_the_gap_where_the_current_values_start() -> None:
    # reference uniform on (0, 3]; current uniform on [1.5, 2] and (2, 3]: the largest gap is
    # just below 1.5 (F_ref 0.5, F_cur 0), between the edges
    ref, cur, edges = [0, 10, 10, 10, 0], [0, 0, 10, 20, 0], [0.0, 1.0, 2.0, 3.0]
    edge_only, _ = drift_stats.ks(ref, cur)
    statistic, p_value = drift_stats.ks(ref, cur, edges=edges, current_range=(1.5, 3.0))
    assert edge_only == pytest.approx(1 / 3)
    assert statistic == pytest.approx(0.5)
    assert p_value < drift_stats.ks(ref, cur)[1]


# -- chi2 --------------------------------------------------------------------------------------


def test_chi2_equals_scipy_chisquare_with_reference_expected_frequencies() -> None:
    ref = np.array([400, 250, 200, 100, 50])
    cur = np.array([300, 220, 180, 120, 80])
    statistic, p_value = drift_stats.chi2(ref, cur)
    expected = stats.chisquare(cur, ref / ref.sum() * cur.sum())
    assert statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert p_value == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_chi2_ignores_buckets_empty_on_both_sides() -> None:
    with_empty = drift_stats.chi2([40, 0, 35, 25, 0], [30, 0, 45, 25, 0])
    without = stats.chisquare([30, 45, 25], np.array([40, 35, 25]) / 100 * 100)
    assert with_empty[0] == pytest.approx(float(without.statistic), rel=1e-12)
    assert with_empty[1] == pytest.approx(float(without.pvalue), rel=1e-9)


def test_chi2_unseen_category_stays_finite_and_is_flagged() -> None:
    ref, cur = [50, 50, 0], [40, 40, 20]
    statistic, p_value = drift_stats.chi2(ref, cur)
    assert math.isfinite(statistic)
    assert statistic > 1000
    assert p_value < 1e-10
    assert drift_stats.drifted("chi2", statistic, p_value, 0.05)
    assert drift_stats.unseen(ref, cur) == 20
    assert drift_stats.unseen(cur, ref) == 0


def test_chi2_all_mass_in_one_bucket_on_both_sides_is_no_drift() -> None:
    assert drift_stats.chi2([0, 80, 0], [0, 30, 0]) == (0.0, 1.0)


# -- jsd ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([400, 250, 200, 100, 50], [300, 220, 180, 120, 80]),
        ([10, 0, 5, 1], [0, 7, 5, 0]),
        ([1, 0], [0, 1]),
    ],
)
def test_jsd_equals_scipy_jensenshannon(ref: list[int], cur: list[int]) -> None:
    expected = float(spatial.distance.jensenshannon(ref, cur))
    assert drift_stats.jsd(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_jsd_is_zero_for_equal_shares_and_sqrt_ln2_for_disjoint_buckets() -> None:
    assert drift_stats.jsd([3, 6, 1], [30, 60, 10]) == 0.0
    assert drift_stats.jsd([0, 9, 0], [0, 2, 0]) == 0.0
    assert drift_stats.jsd([5, 0], [0, 5]) == pytest.approx(math.sqrt(math.log(2)), rel=1e-12)


# -- psi ---------------------------------------------------------------------------------------


def test_psi_equals_a_hand_computation() -> None:
    # shares .3 .5 .2 against .2 .5 .3: 0.1 ln 1.5 + 0 - 0.1 ln(2/3) = 0.2 ln 1.5
    assert drift_stats.psi([30, 50, 20], [20, 50, 30]) == pytest.approx(
        0.2 * math.log(1.5), rel=1e-12
    )


def test_psi_smooths_an_unseen_bucket_with_eps() -> None:
    ref, cur = [50, 50, 0], [40, 40, 20]
    expected = 2 * (0.5 - 0.4) * math.log(0.5 / 0.4) + (1e-4 - 0.2) * math.log(1e-4 / 0.2)
    value = drift_stats.psi(ref, cur)
    assert value == pytest.approx(expected, rel=1e-12)
    assert value > drift_stats.DEFAULT_THRESHOLDS["psi"]


def test_psi_smooths_below_a_tiny_real_share_as_evidently_does() -> None:
    # the reference's smallest real share, 5/100005, is under eps: zeros become a millionth
    # of it, so the smoothing stays below every real bucket
    ref, cur = [100_000, 5, 0], [100_000, 5, 5]
    p = np.array([100_000, 5, 5 / 1e6]) / 100_005
    q = np.array([100_000, 5, 5]) / 100_010
    expected = float(np.sum((p - q) * np.log(p / q)))
    assert drift_stats.psi(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_psi_ignores_buckets_empty_on_both_sides() -> None:
    assert drift_stats.psi([0, 30, 0, 70], [0, 20, 0, 30]) == pytest.approx(
        drift_stats.psi([30, 70], [20, 30]), rel=1e-15
    )
    assert drift_stats.psi([0, 40, 0], [0, 9, 0]) == 0.0


# -- ztest -------------------------------------------------------------------------------------


def _two_proportion(hits_ref: int, n: int, hits_cur: int, m: int) -> tuple[float, float]:
    pooled = (hits_ref + hits_cur) / (n + m)
    z = (hits_cur / m - hits_ref / n) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    return z, math.erfc(abs(z) / math.sqrt(2))


def test_ztest_equals_a_hand_computed_two_proportion_test() -> None:
    z, p_value = drift_stats.ztest([60, 40], [45, 55])
    expected_z, expected_p = _two_proportion(60, 100, 45, 100)
    assert z == pytest.approx(expected_z, rel=1e-12)
    assert z < 0
    assert p_value == pytest.approx(expected_p, rel=1e-9)
    assert 0.03 < p_value < 0.04


def test_ztest_counts_other_rows_against_the_first_category() -> None:
    z, p_value = drift_stats.ztest([600, 380, 20], [250, 240, 10])
    expected_z, expected_p = _two_proportion(600, 1000, 250, 500)
    assert z == pytest.approx(expected_z, rel=1e-12)
    assert p_value == pytest.approx(expected_p, rel=1e-9)


@pytest.mark.parametrize(("ref", "cur"), [([100, 0, 0], [30, 0, 0]), ([0, 100, 0], [0, 30, 0])])
def test_ztest_one_value_on_both_sides_is_no_drift(ref: list[int], cur: list[int]) -> None:
    assert drift_stats.ztest(ref, cur) == (0.0, 1.0)


# -- dispatch, thresholds and input checks -----------------------------------------------------


@pytest.mark.parametrize("method", drift_stats.METHODS)
def test_score_returns_a_p_value_exactly_for_the_p_value_methods(method: str) -> None:
    value, p_value = drift_stats.score(
        method, [30, 50, 20], [20, 50, 30], edges=[1.0, 2.0], ref_std=1.0
    )
    assert math.isfinite(value)
    assert (p_value is not None) == (method in drift_stats.P_VALUE_METHODS)


def test_score_dispatches_to_the_named_statistic() -> None:
    ref, cur = [30, 50, 20], [20, 50, 30]
    assert drift_stats.score("ks", ref, cur) == drift_stats.ks(ref, cur)
    assert drift_stats.score("chi2", ref, cur) == drift_stats.chi2(ref, cur)
    assert drift_stats.score("ztest", ref, cur) == drift_stats.ztest(ref, cur)
    assert drift_stats.score("psi", ref, cur) == (drift_stats.psi(ref, cur), None)
    assert drift_stats.score("jsd", ref, cur) == (drift_stats.jsd(ref, cur), None)
    assert drift_stats.score(
        "wasserstein", ref, cur, edges=[0.0, 1.0], ref_std=2.0, discrete=True
    ) == (drift_stats.wasserstein(ref, cur, [0.0, 1.0], 2.0, discrete=True), None)


def test_score_rejects_an_unknown_method_and_wasserstein_without_edges() -> None:
    with pytest.raises(ValueError, match="unknown drift method"):
        drift_stats.score("kl", [1, 2], [2, 1])
    with pytest.raises(ValueError, match="edges"):
        drift_stats.score("wasserstein", [1, 2], [2, 1], ref_std=1.0)


@pytest.mark.parametrize("method", drift_stats.METHODS)
def test_all_mass_in_one_bucket_on_both_sides_never_drifts(method: str) -> None:
    value, p_value = drift_stats.score(
        method, [0, 500, 0], [0, 700, 0], edges=[0.0, 1.0], ref_std=1.0
    )
    assert not drift_stats.drifted(method, value, p_value, drift_stats.DEFAULT_THRESHOLDS[method])


@pytest.mark.parametrize("method", drift_stats.METHODS)
@pytest.mark.parametrize("empty_side", ["reference", "current"])
def test_an_empty_side_raises_value_error(method: str, empty_side: str) -> None:
    rows, none = [3, 4, 5], [0, 0, 0]
    ref, cur = (none, rows) if empty_side == "reference" else (rows, none)
    with pytest.raises(ValueError, match=f"{empty_side} has no rows"):
        drift_stats.score(method, ref, cur, edges=[1.0, 2.0], ref_std=1.0)


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        ([1, 2, 3], [1, 2], "differ in length"),
        ([1, -2, 3], [1, 2, 3], "negative"),
        ([1.5, 2, 3], [1, 2, 3], "integers"),
        ([], [], "non-empty"),
    ],
)
def test_bad_counts_raise_value_error(ref: list[float], cur: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drift_stats.psi(ref, cur)


def test_drifted_compares_p_values_strictly_and_distances_inclusively() -> None:
    assert drift_stats.drifted("ks", 0.3, 0.049, 0.05)
    assert not drift_stats.drifted("ks", 0.3, 0.05, 0.05)
    assert drift_stats.drifted("jsd", 0.1, None, 0.1)
    assert not drift_stats.drifted("wasserstein", 0.099, None, 0.1)
    assert not drift_stats.drifted("psi", float("nan"), None, 0.2)


def test_drifted_rejects_a_missing_p_value_or_unknown_method() -> None:
    with pytest.raises(ValueError, match="p-value"):
        drift_stats.drifted("ztest", 2.0, None, 0.05)
    with pytest.raises(ValueError, match="unknown"):
        drift_stats.drifted("kl", 2.0, None, 0.05)
