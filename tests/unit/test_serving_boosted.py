"""Compiled histogram gradient boosting equals scikit-learn exactly: thresholds, NaN, classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import ensemble

from toque.serving import boosted

RNG = np.random.default_rng(11)


def _data(classes: int, rows: int = 400, features: int = 5) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(size=(rows, features)).round(2)  # rounded: many ties at thresholds
    x[RNG.random(x.shape) < 0.1] = np.nan  # learned missing-value directions
    signal = np.nan_to_num(x[:, 0]) * 3 + np.nan_to_num(x[:, 1]) ** 2
    if classes == 0:
        return x, signal + RNG.normal(scale=0.3, size=rows)
    return x, np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))


def _probe(compiled: boosted.Boosted, x: np.ndarray) -> np.ndarray:
    """Random rows, NaNs, and every threshold with its float64 neighbours."""
    probes = [RNG.normal(scale=2, size=(300, x.shape[1])), np.full((3, x.shape[1]), np.nan)]
    inner = compiled.children[0::2] != np.arange(compiled.feature.size)
    for feature, threshold in zip(compiled.feature[inner], compiled.threshold[inner], strict=True):
        for value in (threshold, np.nextafter(threshold, np.inf), np.nextafter(threshold, -np.inf)):
            row = x[RNG.integers(len(x))].copy()
            row[feature] = value
            probes.append(row[None, :])
    return np.concatenate(probes)


@pytest.mark.parametrize("classes", [2, 3], ids=["binary", "three-classes"])
def test_classifier_labels_and_probabilities_equal_sklearns(classes: int) -> None:
    x, y = _data(classes)
    model = ensemble.HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, y)
    compiled = boosted.compile_model(model)
    assert compiled is not None
    probe = _probe(compiled, x)
    out = boosted.Runner(compiled).run(probe, proba=True)
    assert np.array_equal(out.values, model.predict(probe))
    assert out.proba is not None and np.array_equal(out.proba, model.predict_proba(probe))


def test_regressor_values_equal_sklearns() -> None:
    x, y = _data(0)
    model = ensemble.HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(x, y)
    compiled = boosted.compile_model(model)
    assert compiled is not None
    probe = _probe(compiled, x)
    assert np.array_equal(
        boosted.Runner(compiled).run(probe, proba=False).values, model.predict(probe)
    )


def test_categorical_splits_are_left_to_scikit_learn() -> None:
    x, y = _data(2)
    x[:, 0] = RNG.integers(0, 4, len(x))
    model = ensemble.HistGradientBoostingClassifier(
        max_iter=5, categorical_features=[0], random_state=0
    ).fit(x, y)
    assert boosted.compile_model(model) is None
