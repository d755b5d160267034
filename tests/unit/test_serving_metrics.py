"""Vectorised histograms, the exposition names the canary analysis queries, and bins."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
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


def test_compute_bins(tmp_path: pathlib.Path) -> None:
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float), "k": ["a", "b"] * 500})
    path = bins.write_bins(frame, tmp_path)
    parsed = bins.parse(path.read_text())
    assert parsed["k"] == {"kind": "categorical", "categories": ["a", "b"]}
    edges = parsed["x"]["edges"]
    assert edges[0] == 0 and edges[-1] == 999 and len(edges) == bins.QUANTILES + 1
    assert bins.parse('{"format": 99}') == {}
