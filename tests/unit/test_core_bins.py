"""The dependency-free feature bins equal the numpy/pandas computation they replace."""

from __future__ import annotations

import numpy as np
import pandas as pd

from toque.core import bins


def _reference(frame: pd.DataFrame) -> dict[str, object]:
    """The numpy/pandas implementation the server and trainer used before."""
    features: dict[str, object] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
            counts = column.dropna().astype(str).value_counts()
            features[str(name)] = {
                "kind": "categorical",
                "categories": [str(c) for c in counts.index[: bins.MAX_CATEGORIES]],
            }
            continue
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        quantiles = np.quantile(values, np.linspace(0, 1, bins.QUANTILES + 1)[1:-1])
        edges = np.unique(np.concatenate([[values.min()], quantiles, [values.max()]]))
        features[str(name)] = {"kind": "numeric", "edges": [float(e) for e in edges]}
    return {"format": bins.FORMAT, "features": features}


def test_same_bins_as_numpy_and_pandas() -> None:
    rng = np.random.default_rng(7)
    n = 5003
    frame = pd.DataFrame(
        {
            "normal": rng.normal(size=n),
            "with_nan": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(size=n)),
            "ints": rng.integers(0, 1000, n),
            "few": rng.integers(0, 3, n).astype(float),
            "flag": rng.random(n) < 0.3,
            "city": rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05]),
            "empty": np.full(n, np.nan),
            "inf": np.where(rng.random(n) < 0.01, np.inf, rng.random(n)),
        }
    )
    assert bins.compute_bins(frame) == _reference(frame)


def test_tiny_and_constant_columns() -> None:
    frame = pd.DataFrame({"one": [3.0, 3.0], "rise": [0.0, 1.0]})
    assert bins.compute_bins(frame) == _reference(frame)


def test_write_and_parse_round_trip(tmp_path: object) -> None:
    import pathlib

    frame = pd.DataFrame({"x": np.arange(1000.0)})
    path = bins.write_bins(frame, pathlib.Path(str(tmp_path)))
    parsed = bins.parse(path.read_text())
    assert parsed["x"]["edges"][0] == 0 and parsed["x"]["edges"][-1] == 999
    assert bins.parse('{"format": 99}') == {}


def test_a_drift_profile_reads_as_a_bins_document() -> None:
    from toque.drift import profile

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=500), "city": rng.choice(["a", "b", "c"], 500)})
    built = profile.build_profile(frame, predictions=rng.integers(0, 2, 500))
    parsed = bins.parse(profile.to_json(built))
    assert parsed["x"]["kind"] == "numeric" and parsed["x"]["edges"] == built.features["x"].edges
    assert parsed["city"]["categories"] == built.features["city"].categories
    assert sum(parsed["x"]["counts"]) == 500


def test_old_bins_without_counts_still_parse() -> None:
    old = '{"format": 1, "features": {"x": {"kind": "numeric", "edges": [0.0, 1.0]}}}'
    assert bins.parse(old) == {"x": {"kind": "numeric", "edges": [0.0, 1.0]}}
