"""A compiled evaluator for scikit-learn's histogram gradient boosting, all trees at once.

``compile_model`` turns a fitted ``HistGradientBoostingClassifier`` or ``...Regressor`` on
numeric features (no categorical splits, no preprocessor) into a ``Boosted`` whose raw
predictions are scikit-learn's bit for bit: rows stay float64, a value goes left when it
is NaN and the node sends missing values left, or when it is ``<=`` the node's threshold,
as ``_predict_one_from_raw_data`` decides; the leaf values are added to the baseline one
tree after another in iteration order, as ``_raw_predict`` adds them. Labels follow
``predict`` (``raw > 0`` for two classes, else the argmax), probabilities and regression
values come from the model's own loss object. Each row is answered on its own, so the
answers do not depend on the batch. Called by ``toque.serving.model``; the load-time check
(``toque.serving.exact``) compares it with the estimator before it serves, and anything
else is served by ``toque.serving.native``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.serving import runner

_TYPES = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


@dataclasses.dataclass(frozen=True)
class Boosted:
    n_features: int
    roots: npt.NDArray[np.intp]  # (T,) in iteration order, class by class within one
    output: npt.NDArray[np.intp]  # (T,) the raw column each tree adds to
    feature: npt.NDArray[np.intp]
    threshold: npt.NDArray[np.float64]
    children: npt.NDArray[np.intp]  # children[2 * node + go_right]; leaves point at themselves
    missing_left: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]
    depth: int
    baseline: npt.NDArray[np.float64]  # (K,)
    loss: Any  # the model's own loss: link and probabilities
    classes: npt.NDArray[Any] | None  # None for a regressor

    def raw(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(rows, K) raw predictions, column-major as scikit-learn's."""
        rows = x.shape[0]
        flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
        trees = self.roots.size
        base = np.repeat(np.arange(rows, dtype=np.intp) * self.n_features, trees)
        nodes = np.tile(self.roots, rows)
        for _ in range(self.depth):
            value = flat[base + self.feature[nodes]]
            missing = np.isnan(value)
            go_right = ~(value <= self.threshold[nodes])
            go_right[missing] = ~self.missing_left[nodes[missing]]
            nodes = self.children[2 * nodes + go_right]
        leaves = self.value[nodes].reshape(rows, trees)
        out = np.empty((rows, self.baseline.size), dtype=np.float64, order="F")
        for k in range(self.baseline.size):
            terms = np.concatenate(
                [np.full((rows, 1), self.baseline[k]), leaves[:, self.output == k]], axis=1
            )
            # Sequential, as scikit-learn adds tree after tree (a sum may pair terms up).
            out[:, k] = np.cumsum(terms, axis=1)[:, -1]
        return out


class Runner:
    """The compiled boosted trees as a fast path."""

    kind = "boosted"
    input = "matrix"
    float32 = False

    def __init__(self, compiled: Boosted) -> None:
        self.compiled = compiled
        self.classes = compiled.classes

    def run(self, inputs: npt.NDArray[np.float64], proba: bool) -> runner.Output:
        compiled = self.compiled
        raw = compiled.raw(inputs)
        if compiled.classes is None:
            values = np.asarray(compiled.loss.link.inverse(raw.ravel()))
            return runner.Output(values, inputs=inputs)
        # Two classes: "> 0", as scikit-learn's predict (argmax would pick class 0 at 0).
        binary = raw.shape[1] == 1
        index = (raw.ravel() > 0).astype(np.intp) if binary else np.argmax(raw, axis=1)
        out = runner.Output(compiled.classes[index], class_index=index, inputs=inputs)
        if proba:
            out.proba = np.asarray(compiled.loss.predict_proba(raw), dtype=np.float64)
        return out


def compile_model(model: Any) -> Boosted | None:
    """A ``Boosted`` for a supported fitted estimator, else ``None``."""
    if type(model).__name__ not in _TYPES or getattr(model, "_preprocessor", None) is not None:
        return None
    categorical = getattr(model, "is_categorical_", None)
    predictors = getattr(model, "_predictors", None)
    baseline = getattr(model, "_baseline_prediction", None)
    loss = getattr(model, "_loss", None)
    if (categorical is not None and np.any(categorical)) or not predictors or loss is None:
        return None
    classifier = type(model).__name__.endswith("Classifier")
    roots, output, features, thresholds, children, missing, values = [], [], [], [], [], [], []
    offset, depth = 0, 0
    for iteration in predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                return None
            n = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            own = np.arange(n, dtype=np.intp)
            left = np.where(leaf, own, nodes["left"].astype(np.intp)) + offset
            right = np.where(leaf, own, nodes["right"].astype(np.intp)) + offset
            pair = np.empty(2 * n, dtype=np.intp)
            pair[0::2], pair[1::2] = left, right
            roots.append(offset)
            output.append(k)
            features.append(np.where(leaf, 0, nodes["feature_idx"].astype(np.intp)))
            thresholds.append(nodes["num_threshold"].astype(np.float64))
            children.append(pair)
            missing.append(nodes["missing_go_to_left"].astype(bool))
            values.append(nodes["value"].astype(np.float64))
            depth = max(depth, int(nodes["depth"].max()))
            offset += n
    return Boosted(
        n_features=int(model.n_features_in_),
        roots=np.asarray(roots, dtype=np.intp),
        output=np.asarray(output, dtype=np.intp),
        feature=np.concatenate(features),
        threshold=np.concatenate(thresholds),
        children=np.concatenate(children),
        missing_left=np.concatenate(missing),
        value=np.concatenate(values),
        depth=depth,
        baseline=np.asarray(baseline, dtype=np.float64).reshape(-1),
        loss=loss,
        classes=np.asarray(model.classes_) if classifier else None,
    )
