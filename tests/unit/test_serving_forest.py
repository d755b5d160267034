"""The compiled tree evaluator equals scikit-learn exactly, edge values included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import ensemble, tree

from toque.serving import forest

RNG = np.random.default_rng(7)


def _data(classes: int, rows: int = 300, features: int = 6) -> tuple[np.ndarray, np.ndarray]:
    x = RNG.normal(size=(rows, features)).round(2)  # rounded: many ties at thresholds
    y = (
        (x[:, 0] * 3 + x[:, 1] ** 2 + RNG.normal(scale=0.5, size=rows))
        if classes == 0
        else (RNG.integers(0, classes, size=rows))
    )
    return x, y


def _probe(model: object, x: np.ndarray) -> np.ndarray:
    """Random rows plus every threshold, its float32 neighbours and ±1 ulp in float64."""
    compiled = forest.compile_model(model)
    assert compiled is not None
    probes = [RNG.normal(scale=2, size=(500, x.shape[1]))]
    inner = compiled.children[0::2] != np.arange(compiled.feature.size)
    for feature, threshold in zip(compiled.feature[inner], compiled.threshold[inner], strict=True):
        t32 = np.float32(threshold)
        for value in (
            threshold,
            np.nextafter(threshold, np.inf),
            np.nextafter(threshold, -np.inf),
            float(t32),
            float(np.nextafter(t32, np.float32(np.inf))),
            float(np.nextafter(t32, np.float32(-np.inf))),
        ):
            row = x[RNG.integers(len(x))].copy()
            row[feature] = value
            probes.append(row[None, :])
    out = np.vstack(probes)
    # scikit-learn rejects what float32 cannot hold (thresholds of NaN-only splits are inf).
    return out[(np.abs(out) < np.finfo(np.float32).max).all(axis=1)]


@pytest.mark.parametrize(
    "model",
    [
        ensemble.RandomForestClassifier(n_estimators=25, random_state=0),
        ensemble.ExtraTreesClassifier(n_estimators=25, random_state=0),
        tree.DecisionTreeClassifier(random_state=0),
    ],
    ids=["rf", "extra", "tree"],
)
@pytest.mark.parametrize("classes", [2, 3])
def test_classifiers_match_sklearn(model: object, classes: int) -> None:
    x, y = _data(classes)
    model.fit(x, np.asarray(["a", "b", "c"])[y] if classes == 3 else y)  # type: ignore[attr-defined]
    probes = _probe(model, x)
    compiled = forest.compile_model(model)
    assert compiled is not None
    labels, proba = compiled.predict(probes)
    assert (labels == model.predict(probes)).all()  # type: ignore[attr-defined]
    assert np.array_equal(proba, model.predict_proba(probes))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "model",
    [
        ensemble.RandomForestRegressor(n_estimators=20, random_state=0),
        ensemble.ExtraTreesRegressor(n_estimators=20, random_state=0),
        tree.DecisionTreeRegressor(random_state=0),
    ],
    ids=["rf", "extra", "tree"],
)
def test_regressors_match_sklearn(model: object) -> None:
    x, y = _data(0)
    model.fit(x, y)  # type: ignore[attr-defined]
    probes = _probe(model, x)
    compiled = forest.compile_model(model)
    assert compiled is not None
    values, _ = compiled.predict(probes)
    assert np.array_equal(values, model.predict(probes))  # type: ignore[attr-defined]


def test_missing_values_follow_the_tree() -> None:
    x, y = _data(2)
    x[RNG.random(x.shape) < 0.1] = np.nan
    model = ensemble.RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    probes = _probe(model, np.nan_to_num(x))
    probes[RNG.random(probes.shape) < 0.2] = np.nan
    expected = model.predict(probes), model.predict_proba(probes)
    compiled = forest.compile_model(model)
    assert compiled is not None
    labels, proba = compiled.predict(probes)
    assert (labels == expected[0]).all()
    assert np.array_equal(proba, expected[1])


def test_vote_ties_break_like_sklearn() -> None:
    # Pure leaves and an even number of trees: some rows get exactly half the votes.
    x, y = _data(2)
    model = ensemble.RandomForestClassifier(n_estimators=4, random_state=1).fit(x, y)
    probes = RNG.normal(scale=2, size=(3000, x.shape[1]))
    compiled = forest.compile_model(model)
    assert compiled is not None
    labels, proba = compiled.predict(probes)
    assert (proba[:, 0] == 0.5).any()
    assert (labels == model.predict(probes)).all()


def test_unsupported_models_are_not_compiled() -> None:
    from sklearn import linear_model

    x, y = _data(2)
    assert forest.compile_model(linear_model.LogisticRegression().fit(x, y)) is None
    assert forest.compile_model(object()) is None
