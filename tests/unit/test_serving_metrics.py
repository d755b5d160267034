"""Vectorised histograms, the exposition names the canary analysis and the drift monitor
query (confidence, per-group and feedback counters), worker snapshots, and bins."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd
import pytest
from prometheus_client import exposition, parser

from toque.core import bins
from toque.serving import metrics


def _samples(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition.generate_latest(metrics.registry_for(m)).decode()
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _layout() -> metrics.Layout:
    return metrics.Layout(
        "m",
        "3",
        "sha256:x",
        [("a", 0, [1.0, 2.0, 3.0])],
        [("colour", 1, ["0", "1"])],
        None,
        ["no", "yes"],
    )


def test_feature_histograms_match_a_per_value_count() -> None:
    m = metrics.Metrics(_layout())
    values = np.asarray([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, np.nan, 10.0])
    matrix = np.column_stack([values, np.asarray([0, 1, 1, 0, 2, 1, 1, 0, 0], dtype=float)])
    m.batch(matrix[:4], 4, np.asarray([0, 1, 1, 1]), None)
    m.batch(matrix[4:], 5, np.asarray([0, 0, 0, 0, 1]), None)
    s = _samples(m)
    base = (("feature", "a"), ("model", "m"), ("version", "3"))

    def bucket(le: str) -> float:
        return s[("toque_serving_feature_value_bucket", tuple(sorted((*base, ("le", le)))))]

    finite = values[~np.isnan(values)]
    for le in (1.0, 2.0, 3.0):
        assert bucket(str(le)) == (finite <= le).sum()
    assert bucket("+Inf") == len(finite)
    assert s[("toque_serving_feature_value_sum", base)] == finite.sum()
    label = (("model", "m"), ("version", "3"))
    assert s[("toque_serving_predictions_total", (("class", "no"), *label))] == 5
    assert s[("toque_serving_predictions_total", (("class", "yes"), *label))] == 4
    assert s[("toque_serving_rows_total", label)] == 9
    cat = (("feature", "colour"), ("model", "m"), ("version", "3"))
    assert s[("toque_serving_feature_category_total", (("category", "1"), *cat))] == 4
    assert s[("toque_serving_feature_category_total", (("category", "__other__"), *cat))] == 1


def test_requests_latency_and_info() -> None:
    m = metrics.Metrics(_layout())
    m.request("infer", 200, 0.002)
    m.request("infer", 200, 0.2)
    m.request("invocations", 500, 0.003)
    m.sampler_dropped = 7
    s = _samples(m)
    label = (("model", "m"), ("version", "3"))
    key = (("code", "200"), ("endpoint", "infer"), *label)
    assert s[("toque_serving_requests_total", key)] == 2
    assert s[("toque_serving_request_duration_seconds_bucket", (("le", "0.005"), *label))] == 2
    assert s[("toque_serving_request_duration_seconds_count", label)] == 3
    assert s[("toque_serving_samples_dropped_total", label)] == 7
    assert s[("toque_serving_model_info", (("digest", "sha256:x"), *label))] == 1


def test_workers_add_up_through_snapshots(tmp_path: pathlib.Path) -> None:
    peer = metrics.Metrics(_layout(), tmp_path)
    peer.request("infer", 200, 0.01)
    peer.batch(np.asarray([[1.5, 0.0]]), 1, np.asarray([1]), None)
    (tmp_path / "1.json").write_bytes(peer.counts.to_json())  # as another pid would
    mine = metrics.Metrics(_layout(), tmp_path)
    mine.request("infer", 200, 0.01)
    s = _samples(mine)
    label = (("model", "m"), ("version", "3"))
    assert (
        s[("toque_serving_requests_total", (("code", "200"), ("endpoint", "infer"), *label))] == 2
    )


def test_a_scrape_served_by_another_worker_never_reads_a_smaller_counter(
    tmp_path: pathlib.Path,
) -> None:
    first = metrics.Metrics(_layout(), tmp_path)
    second = metrics.Metrics(_layout(), tmp_path)
    first.identity, second.identity = "101", "102"
    second.batch(np.asarray([[1.5, 0.0]] * 5), 5, np.asarray([1] * 5), None)
    second.publish()
    # The first worker's rows arrive after its last timed snapshot.
    first.batch(np.asarray([[1.5, 0.0]] * 10), 10, np.asarray([0] * 10), None)
    label = (("model", "m"), ("version", "3"))
    rows = ("toque_serving_rows_total", label)
    assert _samples(first)[rows] == 15
    assert _samples(second)[rows] == 15
    second.batch(np.asarray([[1.5, 0.0]]), 1, np.asarray([1]), None)
    assert _samples(second)[rows] == 16
    assert _samples(first)[rows] == 16


def test_compute_bins(tmp_path: pathlib.Path) -> None:
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float), "k": ["a", "b"] * 500})
    path = bins.write_bins(frame, tmp_path)
    parsed = bins.parse(path.read_text())
    assert parsed["k"] == {"kind": "categorical", "categories": ["a", "b"]}
    edges = parsed["x"]["edges"]
    assert edges[0] == 0 and edges[-1] == 999 and len(edges) == bins.QUANTILES + 1
    assert bins.parse('{"format": 99}') == {}


def _classifier_layout() -> metrics.Layout:
    return metrics.Layout(
        "m",
        "3",
        "sha256:x",
        [("a", 0, [1.0, 2.0])],
        [("colour", 1, ["red", "blue"])],
        None,
        ["no", "yes"],
        probabilities=True,
    )


LABEL = (("model", "m"), ("version", "3"))


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"model": "m", "version": "3", **labels}.items()))


def test_confidence_histogram_counts_each_rows_top_probability_in_le_buckets() -> None:
    layout = dataclasses.replace(_classifier_layout(), class_labels=[str(k) for k in range(20)])
    m = metrics.Metrics(layout)
    top = np.asarray([0.05, 0.0500001, 0.5, 0.55, 0.6, 0.95, 0.97, 1.0])
    proba = np.empty((8, 20))
    for i, t in enumerate(top):  # the top class in a different column each row
        proba[i] = (1 - t) / 19
        proba[i, (3 * i) % 20] = t
    frame = pd.DataFrame({"a": np.ones(8), "colour": ["red"] * 8})
    m.batch(frame.iloc[:5], 5, None, np.asarray(["0"] * 5), proba[:5])
    m.batch(frame.iloc[5:], 3, None, np.asarray(["0", "0", "1"]), proba[5:])
    s = _samples(m)

    def bucket(le: str) -> float:
        return s[("toque_serving_prediction_confidence_bucket", _key(le=le))]

    assert bucket("0.05") == 1  # 0.05 itself is in the (.., 0.05] bucket
    assert bucket("0.1") == 2
    assert bucket("0.5") == 3 and bucket("0.55") == 4 and bucket("0.6") == 5
    assert bucket("0.95") == 6 and bucket("1.0") == 8
    for edge in bins.CONFIDENCE_EDGES:
        assert bucket(str(edge)) == (top <= edge).sum(), edge
    assert bucket("+Inf") == 8 == s[("toque_serving_prediction_confidence_count", LABEL)]
    assert s[("toque_serving_prediction_confidence_sum", LABEL)] == pytest.approx(top.sum())


def test_no_confidence_histogram_without_probabilities() -> None:
    m = metrics.Metrics(_layout())
    m.batch(np.asarray([[1.5, 0.0]]), 1, np.asarray([1]), None)
    assert not any(
        name.startswith("toque_serving_prediction_confidence") for name, _ in _samples(m)
    )


def test_confidence_buckets_equal_the_drift_monitors_count() -> None:
    from toque.drift import current, profile, types

    assert list(bins.CONFIDENCE_EDGES) == list(types.CONFIDENCE_EDGES)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=2000), "colour": rng.choice(["red", "blue"], 2000)})
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=2000)
    proba[:20, 0] = 0.5  # on an edge
    proba[:20, 1:] = 0.25
    reference = profile.build_profile(frame)
    layout = metrics.Layout(
        "m",
        "3",
        "sha256:x",
        [("a", 0, reference.features["a"].edges)],
        [("colour", 1, reference.features["colour"].categories)],
        None,
        ["x", "y", "z"],
        probabilities=True,
    )
    m = metrics.Metrics(layout)
    m.batch(frame, len(frame), proba.argmax(axis=1), None, proba)
    m.flush()
    expected = current.count(reference, frame, proba=proba)
    assert m.counts.confidence == expected.confidence
    assert m.counts.features[0] == expected.features["a"].counts
    assert m.counts.categories[0] == expected.features["colour"].counts


def test_group_predictions_count_classes_per_category_and_other() -> None:
    m = metrics.Metrics(_classifier_layout())
    frame = pd.DataFrame({"a": [1.0] * 5, "colour": ["red", "red", "blue", "green", None]})
    m.batch(frame, 5, None, np.asarray(["yes", "no", "yes", "yes", "no"]))
    m.batch(frame.iloc[:2], 2, None, np.asarray(["yes", "yes"]))
    s = _samples(m)

    def groups(group: str, cls: str) -> float:
        key = _key(feature="colour", group=group, **{"class": cls})
        return s.get(("toque_serving_group_predictions_total", key), 0.0)

    assert groups("red", "yes") == 3 and groups("red", "no") == 1
    assert groups("blue", "yes") == 1 and groups("blue", "no") == 0
    assert groups("__other__", "yes") == 1 and groups("__other__", "no") == 1


def test_group_predictions_of_the_compiled_path_use_class_names() -> None:
    m = metrics.Metrics(_layout())  # colour categories "0", "1"; classes no/yes
    matrix = np.asarray([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 7.0]])
    m.batch(matrix, 4, np.asarray([0, 1, 0, 1]), None)
    s = _samples(m)
    name = "toque_serving_group_predictions_total"
    assert s[(name, _key(feature="colour", group="1", **{"class": "yes"}))] == 1
    assert s[(name, _key(feature="colour", group="1", **{"class": "no"}))] == 1
    assert s[(name, _key(feature="colour", group="0", **{"class": "no"}))] == 1
    assert s[(name, _key(feature="colour", group="__other__", **{"class": "yes"}))] == 1


def test_feedback_confusion_and_group_counters_count_exactly_those_rows() -> None:
    m = metrics.Metrics(_classifier_layout())
    frame = pd.DataFrame({"a": [1.0] * 4, "colour": ["red", "red", "blue", "green"]})
    m.feedback_classes(frame, ["yes", "yes", "no", "no"], ["yes", "no", "no", "yes"])
    m.feedback_classes(frame.iloc[:1], ["yes"], ["yes"])
    s = _samples(m)

    def confusion(actual: str, predicted: str) -> float:
        key = _key(actual=actual, predicted=predicted)
        return s.get(("toque_serving_feedback_total", key), 0.0)

    assert (confusion("yes", "yes"), confusion("yes", "no")) == (2, 1)
    assert (confusion("no", "no"), confusion("no", "yes")) == (1, 1)
    assert s[("toque_serving_feedback_rows_total", LABEL)] == 5
    group = {
        (d["feature"], d["group"], d["actual"], d["predicted"]): v
        for (name, k), v in s.items()
        if name == "toque_serving_feedback_group_total" and v
        for d in [dict(k)]
    }
    assert group == {
        ("colour", "red", "yes", "yes"): 2,
        ("colour", "red", "yes", "no"): 1,
        ("colour", "blue", "no", "no"): 1,
        ("colour", "__other__", "no", "yes"): 1,
    }
    # Feedback is not traffic.
    assert s[("toque_serving_rows_total", LABEL)] == 0
    assert not any(n == "toque_serving_feedback_abs_error_total" for n, _ in s)


def test_every_known_class_and_group_is_exposed_at_zero_before_any_traffic() -> None:
    """increase() drops a series' first count, so one born mid-window would under-read."""
    m = metrics.Metrics(_classifier_layout())
    s = _samples(m)
    names = {name for name, _ in s}
    for family in (
        "toque_serving_predictions_total",
        "toque_serving_group_predictions_total",
        "toque_serving_feedback_total",
        "toque_serving_feedback_group_total",
    ):
        assert family in names, family
        assert all(v == 0 for (name, _), v in s.items() if name == family)
    assert s[("toque_serving_predictions_total", _key(**{"class": "no"}))] == 0
    assert s[("toque_serving_predictions_total", _key(**{"class": "yes"}))] == 0
    groups = {
        (d["group"], d["class"])
        for (name, k) in s
        if name == "toque_serving_group_predictions_total"
        for d in [dict(k)]
    }
    assert groups == {(g, c) for g in ("red", "blue", "__other__") for c in ("no", "yes")}
    pairs = {
        (d["actual"], d["predicted"])
        for (name, k) in s
        if name == "toque_serving_feedback_total"
        for d in [dict(k)]
    }
    assert pairs == {(a, p) for a in ("no", "yes") for p in ("no", "yes")}


def test_a_model_with_too_many_classes_for_zeroed_series_exposes_only_seen_ones() -> None:
    many = [str(k) for k in range(metrics.ZERO_SERIES_LIMIT + 1)]
    layout = dataclasses.replace(_classifier_layout(), class_labels=many)
    m = metrics.Metrics(layout)
    m.batch(np.asarray([[1.0, 0.0]]), 1, np.asarray([3]), None)
    s = _samples(m)
    seen = [k for (name, k) in s if name == "toque_serving_predictions_total"]
    assert seen == [_key(**{"class": "3"})]
    assert not any(name == "toque_serving_feedback_total" for name, _ in s)


def test_feedback_of_a_regressor_sums_absolute_and_squared_errors() -> None:
    layout = metrics.Layout("m", "3", "sha256:x", [], [], [1.0, 2.0], None)
    m = metrics.Metrics(layout)
    m.feedback_values(np.asarray([1.0, 2.0, 4.0]), np.asarray([1.5, 2.0, 1.0]))
    s = _samples(m)
    assert s[("toque_serving_feedback_rows_total", LABEL)] == 3
    assert s[("toque_serving_feedback_abs_error_total", LABEL)] == 3.5
    assert s[("toque_serving_feedback_squared_error_total", LABEL)] == 9.25


def test_feedback_requests_stay_out_of_the_latency_histogram() -> None:
    m = metrics.Metrics(_layout())
    m.request("infer", 200, 0.01)
    m.request("feedback", 200, None)
    s = _samples(m)
    assert s[("toque_serving_requests_total", _key(code="200", endpoint="feedback"))] == 1
    assert s[("toque_serving_request_duration_seconds_count", LABEL)] == 1


def test_counts_survive_a_json_round_trip_and_add_up() -> None:
    m = metrics.Metrics(_classifier_layout())
    frame = pd.DataFrame({"a": [0.5, 1.5, 9.0], "colour": ["red", "blue", "green"]})
    proba = np.asarray([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    m.request("infer", 200, 0.01)
    m.request("feedback", 400, None)
    m.batch(frame, 3, None, np.asarray(["no", "yes", "no"]), proba)
    m.feedback_classes(frame, ["no", "no", "yes"], ["no", "yes", "no"])
    m.feedback_values(np.asarray([1.0]), np.asarray([3.0]))
    m.flush()
    counts = m.counts
    assert counts.group_predictions and counts.feedback_group and sum(counts.confidence) == 3
    copy = metrics.Counts.from_json(counts.to_json())
    assert copy == counts
    copy.add(counts)
    assert copy.feedback == {key: 2 * n for key, n in counts.feedback.items()}
    assert copy.feedback_group == {key: 2 * n for key, n in counts.feedback_group.items()}
    assert copy.group_predictions == {k: 2 * n for k, n in counts.group_predictions.items()}
    assert copy.requests == {key: 2 * n for key, n in counts.requests.items()}
    assert copy.confidence == [2 * n for n in counts.confidence]
    assert copy.confidence_sum == 2 * counts.confidence_sum
    assert copy.feedback_rows == 2 * counts.feedback_rows == 8
    assert copy.feedback_abs_error == 4.0 and copy.feedback_squared_error == 8.0
