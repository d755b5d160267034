"""Continuous drift monitoring's PromQL and the reading of Prometheus's answers
(``toque.reconcile.driftqueries``): buckets aligned with the reference profile or refused,
missing values, predictions and confidence, usage, real accuracy and bias."""

from __future__ import annotations

import pytest

from toque.api import driftmonitor as dm
from toque.drift import types as dtypes
from toque.reconcile import analysis
from toque.reconcile import driftqueries as dq

TARGET = dq.Target("team-a", "churn", "3", 3600, bias_feature="region")


def sample(value: float, **labels: str) -> analysis.Sample:
    return analysis.Sample(labels=labels, value=value)


def profile(**extra: object) -> dtypes.Profile:
    features = {
        "age": dtypes.FeatureProfile(
            "age", "numeric", rows=100, missing=0, counts=[10, 40, 40, 10], edges=[9.5, 10, 30]
        ),
        "region": dtypes.FeatureProfile(
            "region",
            "categorical",
            rows=100,
            missing=0,
            counts=[60, 40, 0],
            categories=["eu", "us"],
        ),
    }
    return dtypes.Profile(features=features, rows=100, **extra)  # type: ignore[arg-type]


def cumulative(feature: str, edges: list[str], counts: list[float]) -> list[analysis.Sample]:
    out, running = [], 0.0
    for edge, n in zip(edges, counts, strict=True):
        running += n
        out.append(sample(running, feature=feature, le=edge))
    return out


def test_every_query_selects_the_namespace_model_and_version_over_the_window() -> None:
    queries = dq.queries(TARGET)
    assert set(queries) == {
        dq.FEATURES,
        dq.CATEGORIES,
        dq.ROWS,
        dq.CLASSES,
        dq.VALUES,
        dq.CONFIDENCE,
        dq.FEEDBACK,
        dq.USAGE_REQUESTS,
        dq.USAGE_ROWS,
        dq.GROUP_PREDICTIONS,
        dq.FEEDBACK_GROUPS,
    }
    assert queries[dq.FEATURES] == (
        "sum by (feature, le) (increase(toque_serving_feature_value_bucket"
        '{namespace="team-a",model="churn",version="3"}[3600s]))'
    )
    for key, query in queries.items():
        assert 'namespace="team-a",model="churn"' in query and "[3600s]" in query, key
        if not key.startswith("usage"):
            assert 'version="3"' in query, key
    assert 'endpoint!="feedback"' in queries[dq.USAGE_REQUESTS]
    assert 'feature="region"' in queries[dq.GROUP_PREDICTIONS]


def test_label_values_are_escaped_and_bias_queries_only_come_with_a_bias_feature() -> None:
    queries = dq.queries(dq.Target("ns", 'we"ird\\model', "1", 60))
    assert 'model="we\\"ird\\\\model"' in queries[dq.ROWS]
    assert dq.GROUP_PREDICTIONS not in queries and dq.FEEDBACK_GROUPS not in queries


def test_buckets_are_ordered_by_their_numeric_edge_not_as_text() -> None:
    # As text "10" < "30" < "9.5" < "+Inf"; the profile's order is 9.5, 10, 30, +Inf.
    answers = {
        dq.ROWS: [sample(100)],
        dq.FEATURES: list(reversed(cumulative("age", ["9.5", "10", "30", "+Inf"], [5, 20, 70, 5]))),
        dq.CATEGORIES: [
            sample(50, feature="region", category="eu"),
            sample(50, feature="region", category="us"),
        ],
    }
    current = dq.current_counts(profile(), answers)
    assert current.rows == 100
    assert current.features["age"] == dtypes.FeatureCounts([5, 20, 70, 5], 0)


def test_a_histogram_with_other_buckets_than_the_profile_is_refused() -> None:
    answers = {
        dq.ROWS: [sample(100)],
        dq.FEATURES: cumulative("age", ["9.5", "30", "+Inf"], [25, 70, 5]),
        dq.CATEGORIES: [sample(100, feature="region", category="eu")],
    }
    with pytest.raises(dq.Misaligned, match=r"'age'.*3 buckets.*profile 4"):
        dq.current_counts(profile(), answers)


def test_a_histogram_with_other_edges_than_the_profile_is_refused() -> None:
    answers = {
        dq.ROWS: [sample(100)],
        dq.FEATURES: cumulative("age", ["9.5", "11", "30", "+Inf"], [5, 20, 70, 5]),
        dq.CATEGORIES: [sample(100, feature="region", category="eu")],
    }
    with pytest.raises(dq.Misaligned, match="edge 11 is not the profile's 10"):
        dq.current_counts(profile(), answers)


def test_a_feature_without_histogram_is_refused_once_rows_came_in() -> None:
    answers = {
        dq.ROWS: [sample(100)],
        dq.CATEGORIES: [sample(100, feature="region", category="eu")],
    }
    with pytest.raises(dq.Misaligned, match="'age' of the reference profile has no histogram"):
        dq.current_counts(profile(), answers)


def test_no_traffic_at_all_gives_zero_counts_not_a_refusal() -> None:
    current = dq.current_counts(profile(), {})
    assert current.rows == 0
    assert current.features["age"] == dtypes.FeatureCounts([0, 0, 0, 0], 0)
    assert current.features["region"] == dtypes.FeatureCounts([0, 0, 0], 0)


def test_rows_no_bucket_got_are_missing_and_unknown_categories_are_other() -> None:
    answers = {
        dq.ROWS: [sample(100.4)],
        # increase() extrapolates: counts are fractional and rounded per bucket.
        dq.FEATURES: cumulative("age", ["9.5", "10", "30", "+Inf"], [4.8, 20.1, 60.2, 5.1]),
        dq.CATEGORIES: [
            sample(50, feature="region", category="eu"),
            sample(30, feature="region", category="apac"),
            sample(20.4, feature="region", category="__other__"),
        ],
    }
    current = dq.current_counts(profile(), answers)
    assert current.features["age"] == dtypes.FeatureCounts([5, 20, 60, 5], 10)
    assert current.features["region"] == dtypes.FeatureCounts([50, 0, 50], 0)


def test_predictions_and_confidence_are_aligned_with_the_profile() -> None:
    prediction = dtypes.FeatureProfile(
        "prediction", "categorical", rows=100, missing=0, counts=[70, 30, 0], categories=["0", "1"]
    )
    edges = [f"{e:g}" for e in dtypes.CONFIDENCE_EDGES] + ["+Inf"]
    per_bucket = [0.0] * 9 + [10.0] + [0.0] * 9 + [90.0, 0.0]
    confidence, running = [], 0.0
    for edge, n in zip(edges, per_bucket, strict=True):
        running += n
        confidence.append(sample(running, le=edge))
    answers = {
        dq.ROWS: [sample(100)],
        dq.FEATURES: cumulative("age", ["9.5", "10", "30", "+Inf"], [25, 25, 25, 25]),
        dq.CATEGORIES: [sample(100, feature="region", category="us")],
        dq.CLASSES: [sample(60, **{"class": "0"}), sample(40, **{"class": "1"})],
        dq.CONFIDENCE: confidence,
    }
    current = dq.current_counts(profile(prediction=prediction), answers)
    assert current.prediction == dtypes.FeatureCounts([60, 40, 0], 0)
    assert current.confidence == [round(n) for n in per_bucket]


def test_a_confidence_histogram_of_other_buckets_is_left_out_not_guessed() -> None:
    answers = {
        dq.ROWS: [sample(0)],
        dq.CONFIDENCE: [sample(1, le="0.5"), sample(2, le="+Inf")],
    }
    assert dq.current_counts(profile(), answers).confidence is None


def test_accuracy_counts_matching_labels_among_the_fed_back_rows() -> None:
    answers = {
        dq.FEEDBACK: [
            sample(80, actual="1", predicted="1"),
            sample(10, actual="0", predicted="1"),
            sample(10, actual="0", predicted="0"),
        ]
    }
    assert dq.accuracy(answers) == (0.9, 100)
    assert dq.accuracy({}) == (None, 0)


def test_usage_gives_each_version_its_requests_rows_and_share() -> None:
    answers = {
        dq.USAGE_REQUESTS: [sample(10, version="10"), sample(30, version="9")],
        dq.USAGE_ROWS: [sample(250, version="10"), sample(750, version="9")],
    }
    assert dq.usage(answers) == [
        dm.VersionUsage(version="9", requests=30, rows=750, share=0.75),
        dm.VersionUsage(version="10", requests=10, rows=250, share=0.25),
    ]


def _group(group: str, positive: float, negative: float) -> list[analysis.Sample]:
    return [
        sample(positive, group=group, **{"class": "1"}),
        sample(negative, group=group, **{"class": "0"}),
    ]


def test_bias_compares_positive_rates_of_groups_with_enough_rows() -> None:
    performance = dtypes.Performance(["0", "1"], [1.0], [0, 0], [None, None], 0.9)
    answers = {
        dq.GROUP_PREDICTIONS: _group("eu", 60, 40) + _group("us", 20, 80) + _group("tiny", 5, 0),
        dq.FEEDBACK_GROUPS: [
            sample(45, group="eu", actual="1", predicted="1"),
            sample(5, group="eu", actual="0", predicted="1"),
            sample(40, group="us", actual="0", predicted="0"),
            sample(10, group="us", actual="1", predicted="0"),
        ],
    }
    spec = dm.BiasSpec(feature="region", max_disparity=0.3)
    out = dq.bias(spec, profile(performance=performance), answers, enough_rows=True)
    assert out.positive_class == "1"
    assert [(g.group, g.rows, g.positive_rate, g.error_rate) for g in out.groups or []] == [
        ("eu", 100, 0.6, 0.1),
        ("tiny", 5, 1.0, None),
        ("us", 100, 0.2, 0.2),
    ]
    # The five-row group's rate of 1.0 is not counted: chance, not the model.
    assert out.disparity == 0.4 and out.error_disparity == 0.1 and out.biased is True


def test_bias_stays_undecided_without_enough_rows() -> None:
    answers = {dq.GROUP_PREDICTIONS: _group("eu", 60, 40) + _group("us", 20, 80)}
    spec = dm.BiasSpec(feature="region", max_disparity=0.3)
    out = dq.bias(spec, profile(), answers, enough_rows=False)
    assert out.disparity == 0.4 and out.biased is None
    one_group = dq.bias(spec, profile(), {dq.GROUP_PREDICTIONS: _group("eu", 6, 40)}, True)
    assert one_group.disparity is None and one_group.biased is None
