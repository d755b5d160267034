"""Scores of a check on raw rows against scipy on the same rows (the fine-grid path).

``build_profile`` + ``current.count`` + ``check.check``, as a scheduled Job, the CLI and the
benchmark run them, on seeded data of four families: normalised Wasserstein within 3 %
(or 0.003, whichever is larger) of ``scipy.stats.wasserstein_distance / std``, the KS
statistic within 0.005 of ``scipy.stats.ks_2samp``'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import stats  # type: ignore[import-untyped]

from toque.drift import check, current, profile, types
from toque.drift import stats as drift_stats

ROWS = 50_000
Draw = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]
FAMILIES: dict[str, Draw] = {
    "normal": lambda rng, n: rng.normal(10.0, 3.0, n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 0.5, n),
    "uniform": lambda rng, n: rng.uniform(0.0, 100.0, n),
    "exponential": lambda rng, n: rng.exponential(2.0, n),
}


def _scores(
    reference: npt.NDArray[np.float64], current_values: npt.NDArray[np.float64]
) -> dict[str, float]:
    built = profile.build_profile(pd.DataFrame({"x": reference}))
    counted = current.count(built, pd.DataFrame({"x": current_values}))
    found: dict[str, float] = {}
    for method in ("wasserstein", "ks"):
        report = check.check(built, counted, types.Rules(default_method=method))
        (result,) = report.features
        assert result.method == method and result.score is not None
        found[method] = result.score
    return found


def _assert_close_to_scipy(
    reference: npt.NDArray[np.float64], current_values: npt.NDArray[np.float64]
) -> None:
    found = _scores(reference, current_values)
    exact = stats.wasserstein_distance(reference, current_values) / reference.std()
    assert abs(found["wasserstein"] - exact) <= max(0.03 * exact, 0.003), (found, exact)
    statistic = stats.ks_2samp(reference, current_values).statistic
    assert abs(found["ks"] - statistic) <= 0.005, (found, statistic)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1, 0.5])
def test_scores_on_raw_rows_match_scipy_for_a_shift_in_reference_stds(
    family: str, shift: float
) -> None:
    rng = np.random.default_rng([len(family), int(shift * 100)])
    reference = FAMILIES[family](rng, ROWS)
    current_values = FAMILIES[family](rng, ROWS) + shift * reference.std()
    _assert_close_to_scipy(reference, current_values)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_scores_match_scipy_with_current_values_beyond_the_reference_range(family: str) -> None:
    # twice the spread around the reference mean, shifted down: current values fall below
    # the reference minimum and above its maximum
    rng = np.random.default_rng([len(family), 99])
    reference = FAMILIES[family](rng, ROWS)
    drawn = FAMILIES[family](rng, ROWS)
    current_values = (drawn - drawn.mean()) * 2.5 + reference.mean() - 0.3 * reference.std()
    assert current_values.min() < reference.min() and current_values.max() > reference.max()
    _assert_close_to_scipy(reference, current_values)


def test_the_serving_buckets_alone_are_biased_where_the_fine_grid_is_not() -> None:
    # What the fine grid fixes: a 0.5 std shift of a lognormal reads about 0.7 from the 20
    # serving buckets (the continuous monitor's only view), 0.5 from the fine grid.
    rng = np.random.default_rng(5)
    reference = FAMILIES["lognormal"](rng, ROWS)
    shifted = FAMILIES["lognormal"](rng, ROWS) + 0.5 * reference.std()
    built = profile.build_profile(pd.DataFrame({"x": reference}))
    feature = built.features["x"]
    counted = current.count(built, pd.DataFrame({"x": shifted})).features["x"]
    coarse, _ = check.score_feature("wasserstein", feature, counted.counts)
    fine, _ = check.score_feature(
        "wasserstein", feature, counted.counts, fine=counted.fine, sums=counted.sums
    )
    exact = stats.wasserstein_distance(reference, shifted) / reference.std()
    assert abs(fine - exact) <= 0.03 * exact < abs(coarse - exact)
    assert coarse == drift_stats.wasserstein(
        feature.counts, counted.counts, feature.edges, feature.std or 0.0
    )
