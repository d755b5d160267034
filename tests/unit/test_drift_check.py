"""Drift checks on counts: verdicts, thresholds, edge cases, output drift, CBPE, PCA."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from toque.drift import check, current, profile, report, types
from toque.reconcile import driftresult

ROWS = 20_000
NUMERIC = ["a", "b", "c", "d", "e", "f"]


def _rows(seed: int, n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.exponential(size=n),
            "c": rng.uniform(size=n),
            "d": rng.normal(5, 2, size=n),
            "e": rng.integers(0, 4, size=n),
            "f": rng.normal(size=n),
            "g": rng.choice(["x", "y", "z"], p=[0.5, 0.3, 0.2], size=n),
            "h": rng.choice(["u", "v"], size=n),
        }
    )


@pytest.fixture(scope="module")
def reference() -> types.Profile:
    return profile.build_profile(_rows(1))


def _check(
    built: types.Profile, frame: pd.DataFrame, rules: types.Rules | None = None, **kw: Any
) -> types.Report:
    return check.check(built, current.count(built, frame), rules or types.Rules(), **kw)


def _by_name(result: types.Report) -> dict[str, types.FeatureResult]:
    return {f.name: f for f in result.features}


def test_identical_data_is_healthy_with_every_feature_no_drift(reference: types.Profile) -> None:
    result = _check(reference, _rows(1), raw=_rows(1))
    assert result.verdict == "Healthy"
    assert [f.verdict for f in result.features] == ["NoDrift"] * 8
    assert result.drifted_features == [] and not result.dataset_drifted
    assert result.multivariate is not None and not result.multivariate.drifted


def test_a_fresh_sample_of_the_same_distribution_does_not_drift(
    reference: types.Profile,
) -> None:
    result = _check(reference, _rows(2))
    assert result.drifted_features == []
    assert result.verdict == "Healthy"


def test_exactly_the_shifted_features_drift(reference: types.Profile) -> None:
    frame = _rows(2)
    frame["a"] += 0.5
    frame["b"] *= 1.5
    frame["d"] += 1.0
    frame["g"] = np.random.default_rng(3).choice(["x", "y", "z"], p=[0.2, 0.3, 0.5], size=ROWS)
    result = _check(reference, frame)
    assert result.drifted_features == ["a", "b", "d", "g"]
    assert result.drift_share == 0.5 and result.dataset_drifted
    assert result.verdict == "Drifted"
    results = _by_name(result)
    assert results["a"].method == "wasserstein" and results["g"].method == "jsd"


def test_dataset_drifts_only_from_the_drift_share_on(reference: types.Profile) -> None:
    frame = _rows(2)
    frame["a"] += 1.0
    result = _check(reference, frame)
    assert result.drifted_features == ["a"]
    assert not result.dataset_drifted and result.verdict == "Healthy"
    strict = _check(reference, frame, types.Rules(drift_share=0.1))
    assert strict.dataset_drifted and strict.verdict == "Drifted"


def test_too_few_rows_is_insufficient_data_never_an_alarm(reference: types.Profile) -> None:
    frame = _rows(2, n=100)
    frame["a"] += 10
    result = _check(reference, frame)
    assert result.verdict == "InsufficientData"
    assert {f.verdict for f in result.features} == {"InsufficientData"}
    assert result.drifted_features == [] and not result.dataset_drifted


def test_numeric_with_few_values_is_tested_as_categorical(reference: types.Profile) -> None:
    results = _by_name(_check(reference, _rows(2)))
    assert results["e"].method == "jsd"
    small = profile.build_profile(_rows(1, n=800))
    by_small = _by_name(_check(small, _rows(2, n=800), types.Rules(min_samples=100)))
    assert by_small["e"].method == "chi2"
    assert by_small["a"].method == "ks"
    assert by_small["h"].method == "ztest"


def test_a_constant_column_is_constant_until_it_changes() -> None:
    frame = pd.DataFrame({"k": np.full(2000, 7.0), "s": ["same"] * 2000})
    built = profile.build_profile(frame)
    same = _by_name(_check(built, frame))
    assert same["k"].verdict == "Constant" and same["s"].verdict == "Constant"
    assert not same["k"].drifted
    changed = frame.copy()
    changed.loc[:99, "k"] = 8.0
    changed.loc[:999, "s"] = "other"
    results = _by_name(_check(built, changed))
    assert results["k"].verdict == "Drift" and results["s"].verdict == "Drift"


def test_unseen_categories_land_in_other_and_drift(reference: types.Profile) -> None:
    frame = _rows(2)
    frame.loc[: ROWS // 2, "g"] = "brand-new"
    result = _by_name(_check(reference, frame))["g"]
    assert result.verdict == "Drift"
    assert "unseen categories" in result.message


def test_a_missing_rate_increase_is_flagged_and_a_small_one_is_not(
    reference: types.Profile,
) -> None:
    frame = _rows(2)
    rng = np.random.default_rng(4)
    frame.loc[rng.random(ROWS) < 0.2, "c"] = np.nan
    frame.loc[rng.random(ROWS) < 0.01, "f"] = np.nan
    results = _by_name(_check(reference, frame))
    assert results["c"].missing_drifted and results["c"].drifted
    assert results["c"].verdict == "NoDrift"  # the values that are there did not move
    assert results["c"].missing_rate_current == pytest.approx(0.2, abs=0.01)
    assert not results["f"].missing_drifted and not results["f"].drifted


def test_a_feature_with_no_current_values_is_missing(reference: types.Profile) -> None:
    frame = _rows(2)
    frame["g"] = None
    result = _by_name(_check(reference, frame))["g"]
    assert result.verdict == "Missing" and result.drifted and result.samples == 0


def test_auto_thresholds_come_from_the_calibration_chunks(reference: types.Profile) -> None:
    rules = types.Rules(
        thresholds="auto",
        features={"a": types.FeatureRule(), "e": types.FeatureRule(method="chi2")},
    )
    results = _by_name(_check(reference, _rows(2), rules))
    scores = reference.features["a"].calibration["wasserstein"]
    assert results["a"].threshold_source == "auto"
    assert results["a"].threshold == pytest.approx(np.mean(scores) + 3 * np.std(scores, ddof=1))
    assert (results["e"].threshold_source, results["e"].threshold) == ("default", 0.05)


def test_auto_thresholds_widen_for_windows_smaller_than_a_chunk(
    reference: types.Profile,
) -> None:
    rules = types.Rules(thresholds="auto", min_samples=100, features={"a": types.FeatureRule()})
    full = _by_name(_check(reference, _rows(2), rules))["a"]
    small = _by_name(_check(reference, _rows(2, n=500), rules))["a"]
    chunk_rows = reference.features["a"].chunk_rows
    assert chunk_rows == 2000
    assert small.threshold == pytest.approx(full.threshold * (chunk_rows / 500) ** 0.5)


def test_fixed_thresholds_are_recorded_as_fixed(reference: types.Profile) -> None:
    rules = types.Rules(features={"a": types.FeatureRule(method="psi", threshold=0.3)})
    (result,) = _check(reference, _rows(2), rules).features
    assert (result.method, result.threshold, result.threshold_source) == ("psi", 0.3, "fixed")
    assert result.verdict == "NoDrift"


def test_a_rule_type_categorical_picks_a_categorical_method(reference: types.Profile) -> None:
    rules = types.Rules(features={"a": types.FeatureRule(type="categorical")})
    (result,) = _check(reference, _rows(2), rules).features
    assert result.method == "jsd" and result.kind == "categorical"


def test_numeric_methods_on_categorical_features_are_refused(reference: types.Profile) -> None:
    rules = types.Rules(features={"g": types.FeatureRule(method="wasserstein")})
    with pytest.raises(types.InputError, match="numeric buckets"):
        _check(reference, _rows(2), rules)
    with pytest.raises(types.InputError, match="nope"):
        _check(reference, _rows(2), types.Rules(features={"nope": types.FeatureRule()}))


def test_rules_parse_from_the_camel_case_json() -> None:
    rules = types.rules_from_dict(
        {
            "features": [{"name": "a", "method": "psi", "threshold": 0.3, "type": "numeric"}],
            "defaultMethod": "jsd",
            "thresholds": "auto",
            "driftShare": 0.3,
            "minSamples": 50,
        }
    )
    assert rules == types.Rules(
        features={"a": types.FeatureRule("psi", 0.3, "numeric")},
        default_method="jsd",
        thresholds="auto",
        drift_share=0.3,
        min_samples=50,
    )
    with pytest.raises(types.InputError, match="unknown method"):
        types.rules_from_dict({"defaultMethod": "magic"})


def _classifier(seed: int, n: int = ROWS) -> tuple[pd.DataFrame, Any, Any]:
    """Calibrated scores: the label is 1 with probability p."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, size=n)
    labels = (rng.random(n) < p).astype(int)
    proba = np.column_stack([1 - p, p])
    return pd.DataFrame({"x": p + rng.normal(0, 0.1, n)}), labels, proba


def test_output_drift_compares_prediction_distributions() -> None:
    frame, _, proba = _classifier(1)
    predictions = np.argmax(proba, axis=1)
    built = profile.build_profile(frame, predictions=predictions, classes=[0, 1])
    same = check.check(built, current.count(built, frame, predictions=predictions), types.Rules())
    assert same.output is not None and same.output.verdict == "NoDrift"
    shifted = np.where(np.random.default_rng(2).random(ROWS) < 0.3, 1, predictions)
    result = check.check(built, current.count(built, frame, predictions=shifted), types.Rules())
    assert result.output is not None and result.output.drifted
    assert result.drifted_features == [] and result.verdict == "Drifted"


def test_rows_without_a_prediction_are_output_drift_the_status_explains() -> None:
    frame, _, proba = _classifier(1)
    predictions = np.argmax(proba, axis=1)
    built = profile.build_profile(frame, predictions=predictions, classes=[0, 1])
    counted = current.count(built, frame, predictions=predictions)
    assert counted.prediction is not None
    # The server counted every row, but a tenth of them came back with no class.
    kept = [round(n * 0.9) for n in counted.prediction.counts]
    lost = sum(counted.prediction.counts) - sum(kept)
    counted.prediction = types.FeatureCounts(counts=kept, missing=lost)
    result = check.check(built, counted, types.Rules())
    assert result.output is not None and result.output.drifted
    assert result.output.verdict == "NoDrift"  # the distribution itself did not move
    status = driftresult.from_report(result)
    assert status.output is not None
    assert status.output.missing_rate == pytest.approx(lost / ROWS, abs=1e-3)
    assert status.output.message is not None and "missing rate" in status.output.message
    assert "missing rate 0.0% -> 10.0%" in driftresult.describe(status)


def test_estimated_accuracy_matches_the_reference_on_reference_like_data() -> None:
    frame, labels, proba = _classifier(1)
    built = profile.build_profile(frame, labels=labels, proba=proba)
    later, _, later_proba = _classifier(2)
    result = check.check(built, current.count(built, later, proba=later_proba), types.Rules())
    assert result.reference_accuracy is not None and result.estimated_accuracy is not None
    assert abs(result.estimated_accuracy - result.reference_accuracy) < 0.02


def test_estimated_accuracy_skips_buckets_the_reference_never_filled() -> None:
    performance = types.Performance(
        classes=["0", "1"],
        confidence_edges=types.CONFIDENCE_EDGES,
        counts=[0] * 19 + [10, 0],
        accuracy=[*[None] * 19, 0.9, None],
        reference_accuracy=0.9,
    )
    assert check.estimate_accuracy(performance, [5] * 19 + [10, 0]) == pytest.approx(0.9)
    assert check.estimate_accuracy(performance, [5] * 19 + [0, 0]) is None


def _correlated(seed: int, rho: float, n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": y, "z": rng.normal(size=n)})


def test_the_multivariate_signal_fires_on_a_correlation_flip_no_feature_shows() -> None:
    built = profile.build_profile(_correlated(1, 0.9))
    calm = _check(built, _correlated(2, 0.9), raw=_correlated(2, 0.9))
    assert calm.multivariate is not None and not calm.multivariate.drifted
    flipped = _correlated(2, -0.9)
    result = _check(built, flipped, raw=flipped)
    assert result.drifted_features == []
    assert result.multivariate is not None and result.multivariate.drifted
    assert result.verdict == "Drifted"


def test_the_multivariate_signal_needs_the_raw_frame(reference: types.Profile) -> None:
    assert _check(reference, _rows(2)).multivariate is None


def test_markdown_report_has_a_row_per_feature_and_marks_drift(
    reference: types.Profile,
) -> None:
    frame = _rows(2)
    frame["a"] += 1.0
    text = report.to_markdown(_check(reference, frame))
    assert "| feature | type | method | score | threshold | threshold source | verdict |" in text
    assert "| a | numeric | wasserstein |" in text and "**Drift**" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 8  # header, separator, one row per feature


def _result(name: str, drifted: bool, score: float) -> types.FeatureResult:
    return types.FeatureResult(
        name=name,
        kind="numeric",
        method="psi",
        score=score,
        p_value=None,
        threshold=0.2,
        threshold_source="default",
        drifted=drifted,
        verdict="Drift" if drifted else "NoDrift",
        samples=1000,
        missing_rate_reference=0.0,
        missing_rate_current=0.0,
        missing_drifted=False,
        message="",
    )


def test_compact_report_fits_the_limit_with_drifted_features_first() -> None:
    results = [_result(f"feature_{i}", i % 7 == 0, 0.5 if i % 7 == 0 else 0.0) for i in range(300)]
    drifted = [r.name for r in results if r.drifted]
    full = types.Report("Drifted", 1000, 300, 300, results, drifted, len(drifted) / 300, 0.1, True)
    text = report.compact(full, limit=4000)
    body = json.loads(text)
    assert len(text) <= 4000
    assert body["omitted"] == 300 - len(body["features"]) > 0
    assert [f["name"] for f in body["features"]] == drifted[: len(body["features"])]


def test_report_dict_is_json_even_with_infinite_scores() -> None:
    result = _result("k", True, float("inf"))
    full = types.Report("Drifted", 10, 1, 1, [result], ["k"], 1.0, 0.5, True)
    assert json.loads(json.dumps(report.to_dict(full)))["features"][0]["score"] is None
