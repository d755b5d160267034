"""Reference profiles: buckets, counts, JSON round trip, bins-document compatibility."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from toque.core import bins
from toque.drift import current, profile, types


def _reference(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "normal": rng.normal(size=n),
            "with_nan": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(size=n)),
            "ints": rng.integers(0, 3, n),
            "flag": rng.random(n) < 0.3,
            "color": rng.choice(["red", "green", "blue"], size=n),
            "codes": pd.Series(rng.integers(0, 100, n).astype(str), dtype=object),
        }
    )


def _numeric(edges: list[float]) -> types.FeatureProfile:
    return types.FeatureProfile(
        name="x", kind="numeric", rows=0, missing=0, counts=[0] * (len(edges) + 1), edges=edges
    )


def _categorical(categories: list[str]) -> types.FeatureProfile:
    return types.FeatureProfile(
        name="x",
        kind="categorical",
        rows=0,
        missing=0,
        counts=[0] * (len(categories) + 1),
        categories=categories,
    )


def test_profile_survives_a_json_round_trip_with_outputs_and_performance() -> None:
    frame = _reference()
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], size=len(frame))
    built = profile.build_profile(
        frame,
        predictions=np.argmax(proba, axis=1),
        labels=rng.integers(0, 3, len(frame)),
        proba=proba,
        source="file:ref.parquet",
    )
    assert built.prediction is not None and built.performance is not None
    assert built.multivariate is not None
    assert profile.from_json(profile.to_json(built)) == built


def test_profile_json_is_a_bins_document_the_model_server_reads() -> None:
    built = profile.build_profile(_reference())
    parsed = bins.parse(profile.to_json(built))
    assert list(parsed) == list(built.features)
    assert parsed["normal"]["kind"] == "numeric"
    assert parsed["normal"]["edges"] == built.features["normal"].edges
    assert parsed["color"]["kind"] == "categorical"
    assert parsed["color"]["categories"] == built.features["color"].categories


def test_a_bins_document_without_counts_is_refused_as_predating_profiles() -> None:
    document = json.dumps(bins.compute_bins(_reference()))
    with pytest.raises(types.ProfileError, match="predates drift profiles"):
        profile.from_json(document)


@pytest.mark.parametrize("text", ["not json", "[]", '{"format": 2, "features": {}}'])
def test_unreadable_profiles_raise_profile_error(text: str) -> None:
    with pytest.raises(types.ProfileError):
        profile.from_json(text)


def test_numeric_buckets_follow_le_semantics_on_edges_and_outside_the_range() -> None:
    feature = _numeric([1.0, 2.0, 3.0])
    values = [0.5, 1.0, 1.5, 2.0, 3.0, 3.5, np.nan, -np.inf, np.inf]
    found = current.count_feature(feature, pd.Series(values))
    # (-inf,1]: 0.5, 1.0, -inf | (1,2]: 1.5, 2.0 | (2,3]: 3.0 | (3,inf): 3.5, inf | NaN apart
    assert found.counts == [3, 2, 1, 2]
    assert found.missing == 1


def test_numeric_buckets_equal_the_model_server_histogram_buckets() -> None:
    edges = [-1.0, 0.0, 0.5, 2.0]
    values = np.random.default_rng(3).normal(size=1000)
    values[:10] = edges[1]  # exactly on an edge
    server = (values[:, None] > np.asarray(edges)[None, :]).sum(axis=1)  # serving.metrics
    expected = np.bincount(server, minlength=len(edges) + 1).tolist()
    assert current.count_feature(_numeric(edges), pd.Series(values)).counts == expected


def test_categorical_buckets_put_unseen_values_in_other_and_count_missing_apart() -> None:
    feature = _categorical(["a", "b"])
    found = current.count_feature(
        feature, pd.Series(["a", "b", "b", "zzz", None, np.nan, "c"], dtype=object)
    )
    assert found.counts == [1, 2, 2]
    assert found.missing == 2


def test_booleans_and_numeric_looking_strings_are_categorical() -> None:
    built = profile.build_profile(_reference())
    assert built.features["flag"].kind == "categorical"
    assert sorted(built.features["flag"].categories) == ["False", "True"]
    assert built.features["flag"].binary
    assert built.features["codes"].kind == "categorical"
    assert built.features["ints"].kind == "numeric"


def test_high_cardinality_strings_keep_the_top_k_and_put_the_rest_in_other() -> None:
    values = pd.Series([f"id{i}" for i in range(1000)] + ["common"] * 50, dtype=object)
    built = profile.build_profile(pd.DataFrame({"id": values}), top_k=10)
    feature = built.features["id"]
    assert feature.categories[0] == "common"
    assert len(feature.categories) == 10
    assert feature.counts[0] == 50 and feature.counts[-1] == 1050 - 50 - 9


def test_few_distinct_values_each_get_a_bucket_of_their_own() -> None:
    frame = pd.DataFrame({"level": [1, 2, 2, 3, 3, 3, 10] * 100})
    feature = profile.build_profile(frame).features["level"]
    assert feature.edges == [1.0, 2.0, 3.0, 10.0]
    assert feature.counts == [100, 200, 300, 100, 0]
    assert feature.distinct == 4


def test_many_distinct_values_get_deduplicated_quantile_edges_with_min_and_max() -> None:
    values = np.concatenate([np.zeros(5000), np.arange(1, 1001, dtype=float)])
    feature = profile.build_profile(pd.DataFrame({"x": values}), bins=20).features["x"]
    assert feature.edges[0] == 0.0 and feature.edges[-1] == 1000.0
    assert feature.edges == sorted(set(feature.edges))
    assert len(feature.edges) < 21  # the tied quantiles at 0 collapsed
    assert sum(feature.counts) == len(values) and feature.counts[-1] == 0


def test_profile_records_missing_rate_and_summary_statistics() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 3.0]})
    feature = profile.build_profile(frame).features["x"]
    assert (feature.rows, feature.missing) == (4, 1)
    assert (feature.mean, feature.minimum, feature.maximum) == (2.0, 1.0, 3.0)
    assert feature.std == pytest.approx(np.std([1.0, 2.0, 3.0]))


def test_dates_are_not_profiled() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    assert list(profile.build_profile(frame).features) == ["x"]


def test_calibration_scores_one_chunk_each_for_the_distance_methods() -> None:
    built = profile.build_profile(_reference(), chunks=5)
    normal = built.features["normal"]
    assert set(normal.calibration) == {"psi", "jsd", "wasserstein"}
    assert all(len(scores) == 5 for scores in normal.calibration.values())
    assert normal.chunk_rows == 600
    assert set(built.features["color"].calibration) == {"psi", "jsd"}


def test_a_reference_too_small_to_chunk_has_no_calibration() -> None:
    built = profile.build_profile(_reference(n=100), chunks=10)
    assert built.features["normal"].calibration == {}
    assert built.multivariate is None


def test_performance_records_accuracy_per_confidence_bucket() -> None:
    proba = np.array([[0.9, 0.1], [0.92, 0.08], [0.3, 0.7], [0.35, 0.65]])
    labels = ["a", "b", "b", "b"]
    built = profile.build_profile(
        pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}), proba=proba, labels=labels, classes=["a", "b"]
    )
    performance = built.performance
    assert performance is not None
    edges = types.CONFIDENCE_EDGES
    assert performance.confidence_edges == edges
    high = edges.index(0.95)  # 0.9 is an edge (le): 0.9 -> bucket of 0.90, 0.92 -> of 0.95
    assert performance.counts[edges.index(0.9)] == 1 and performance.counts[high] == 1
    assert performance.accuracy[edges.index(0.9)] == 1.0
    assert performance.accuracy[high] == 0.0
    assert performance.accuracy[edges.index(0.7)] == 1.0
    assert performance.accuracy[0] is None
    assert performance.reference_accuracy == 0.75
    assert performance.counts[-1] == 0


def test_count_names_the_profile_columns_the_current_frame_lacks() -> None:
    built = profile.build_profile(_reference())
    with pytest.raises(types.InputError, match="normal, color"):
        current.count(built, _reference().drop(columns=["normal", "color"]))


def test_current_counts_add_merges_rows_buckets_missing_and_fine_grids() -> None:
    built = profile.build_profile(_reference())
    whole = current.count(built, _reference(seed=5))
    first = current.count(built, _reference(seed=5).iloc[:1000])
    rest = current.count(built, _reference(seed=5).iloc[1000:])
    merged = first.add(rest)
    assert merged.rows == whole.rows
    for name, expected in whole.features.items():
        found = merged.features[name]
        assert (found.counts, found.missing, found.fine) == (
            expected.counts,
            expected.missing,
            expected.fine,
        )
        assert (found.minimum, found.maximum) == (expected.minimum, expected.maximum)
        if expected.sums is None:
            assert found.sums is None
        else:
            assert found.sums == pytest.approx(expected.sums, rel=1e-12, abs=1e-9)
    assert whole.features["normal"].fine is not None  # numeric: counted on the fine grid
    assert whole.features["color"].fine is None  # categorical: no fine grid


def test_merging_counts_without_a_fine_grid_drops_it_and_an_empty_count_keeps_it() -> None:
    built = profile.build_profile(_reference())
    counted = current.count(built, _reference(seed=5)).features["normal"]
    coarse = types.FeatureCounts(list(counted.counts), counted.missing)
    mixed = types.CurrentCounts(1, {"normal": coarse}).add(
        types.CurrentCounts(1, {"normal": counted})
    )
    assert mixed.features["normal"].fine is None and mixed.features["normal"].sums is None
    kept = current.empty(built).add(current.count(built, _reference(seed=5)))
    assert kept.features["normal"].fine == counted.fine
    assert kept.features["normal"].minimum == counted.minimum


def test_counting_the_reference_again_gives_the_profile_counts() -> None:
    frame = _reference()
    frame.loc[::7, "color"] = None
    built = profile.build_profile(frame, top_k=2)
    counted = current.count(built, frame)
    for name, feature in built.features.items():
        found = counted.features[name]
        assert (found.counts, found.missing) == (feature.counts, feature.missing)
        if feature.fine_counts:
            assert found.fine == feature.fine_counts


# -- fine grids (raw-rows checks) ----------------------------------------------------------------


def test_serving_edges_are_numpy_linear_quantiles_bit_for_bit() -> None:
    values = np.random.default_rng(7).lognormal(size=12_345)
    feature = profile.build_profile(pd.DataFrame({"x": values}), bins=20).features["x"]
    inner = np.quantile(values, np.arange(1, 20) / 20)
    expected = np.unique(np.concatenate([[values.min()], inner, [values.max()]]))
    assert feature.edges == expected.tolist()


def test_the_fine_grid_holds_the_serving_edges_and_the_exact_reference_cdf() -> None:
    values = np.random.default_rng(8).normal(size=20_000)
    feature = profile.build_profile(pd.DataFrame({"x": values})).features["x"]
    fine = np.asarray(feature.fine_edges)
    assert 100 <= fine.size <= 101 and set(feature.edges) <= set(feature.fine_edges)
    assert fine[0] == values.min() and fine[-1] == values.max()
    cdf = np.cumsum(feature.fine_counts)[:-1] / values.size
    assert cdf.tolist() == [np.count_nonzero(values <= e) / values.size for e in fine]
    inner = np.asarray(feature.fine_means[1:-1])
    assert np.all((inner >= fine[:-1]) & (inner <= fine[1:]))
    truth = [values[(values > a) & (values <= b)].mean() for a, b in itertools.pairwise(fine)]
    # means kept to 1/10,000 of their bucket's width
    assert np.all(np.abs(inner - truth) <= np.diff(fine) * 0.5e-4 + 1e-12)


def test_ties_collapse_fine_quantiles_and_few_values_are_their_own_fine_edges() -> None:
    tied = np.concatenate([np.zeros(5000), np.random.default_rng(9).exponential(size=5000)])
    feature = profile.build_profile(pd.DataFrame({"x": tied})).features["x"]
    assert feature.fine_edges == sorted(set(feature.fine_edges))
    assert feature.fine_edges[0] == 0.0 and feature.fine_counts[0] == 5000
    assert len(feature.fine_edges) < 60  # half the quantiles tied at 0
    few = profile.build_profile(pd.DataFrame({"x": np.arange(10_000) % 37})).features["x"]
    assert few.fine_edges == [float(v) for v in range(37)]
    assert few.fine_means[1:-1] == few.fine_edges[1:]  # each value sits on its edge


def test_a_column_with_infinite_values_has_no_fine_grid_but_keeps_its_buckets() -> None:
    values = np.append(np.random.default_rng(10).normal(size=999), np.inf)
    feature = profile.build_profile(pd.DataFrame({"x": values})).features["x"]
    assert feature.fine_edges == [] and feature.counts[-1] == 1
    counted = current.count_feature(feature, pd.Series(values))
    assert counted.counts == feature.counts and counted.fine is None


def test_infinite_current_values_fall_back_to_the_serving_buckets() -> None:
    built = profile.build_profile(pd.DataFrame({"x": np.arange(1000.0)}))
    counted = current.count_feature(built.features["x"], pd.Series([1.0, np.inf, np.nan]))
    assert counted.counts[-1] == 1 and counted.missing == 1
    assert counted.fine is None and counted.sums is None


def test_current_fine_counts_sums_and_range_come_from_the_rows() -> None:
    built = profile.build_profile(pd.DataFrame({"x": np.arange(1000.0)}))
    feature = built.features["x"]
    values = pd.Series([-5.0, 0.0, 0.5, 10.0, 10.0, 2000.0, np.nan])
    found = current.count_feature(feature, values)
    assert found.fine is not None and found.sums is not None
    codes = np.searchsorted(feature.fine_edges, values.dropna(), side="left")
    assert found.fine == np.bincount(codes, minlength=len(feature.fine_edges) + 1).tolist()
    sums = np.bincount(codes, weights=values.dropna(), minlength=len(feature.fine_edges) + 1)
    assert found.sums == sums.tolist()
    assert (found.minimum, found.maximum, found.missing) == (-5.0, 2000.0, 1)


def test_a_large_reference_calibrates_on_a_sample_and_records_its_chunk_size() -> None:
    frame = pd.DataFrame({"x": np.random.default_rng(11).normal(size=250_000), "y": 1.0})
    frame["y"] = frame["x"] * 0.5 + np.random.default_rng(12).normal(size=250_000)
    built = profile.build_profile(frame, chunks=10)
    feature = built.features["x"]
    assert feature.chunk_rows == profile.CALIBRATION_ROWS // 10
    assert len(feature.calibration["wasserstein"]) == 10
    assert built.multivariate is not None and built.multivariate["chunk_rows"] == 10_000
    assert sum(feature.counts) == 250_000  # the buckets still count every row


def test_a_profile_written_before_fine_grids_reads_and_checks_on_the_serving_buckets() -> None:
    frame = _reference()
    built = profile.build_profile(frame)
    document = json.loads(profile.to_json(built))
    for spec in document["features"].values():
        for key in ("fine_edges", "fine_counts", "fine_offsets"):
            spec.pop(key, None)
    old = profile.from_json(json.dumps(document))
    assert old.features["normal"].fine_edges == []
    counted = current.count(old, _reference(seed=5))
    assert counted.features["normal"].fine is None
    assert old.features["normal"].edges == built.features["normal"].edges


def test_a_fine_grid_missing_a_serving_edge_is_refused_as_damaged() -> None:
    document = json.loads(profile.to_json(profile.build_profile(_reference())))
    spec = document["features"]["normal"]
    spec["fine_edges"] = [e for e in spec["fine_edges"] if e != spec["edges"][3]]
    spec["fine_counts"], spec["fine_offsets"] = spec["fine_counts"][1:], spec["fine_offsets"][1:]
    with pytest.raises(types.ProfileError, match="does not hold its edges"):
        profile.from_json(json.dumps(document))


def test_profile_json_keeps_each_list_of_numbers_on_one_line() -> None:
    text = profile.to_json(profile.build_profile(_reference())).decode()
    edges = json.loads(text)["features"]["normal"]["fine_edges"]
    assert '"fine_edges": ' + json.dumps(edges, separators=(",", ":")) in text
    assert '"categories": [\n' in text  # strings keep one per line
