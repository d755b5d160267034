"""A compiled evaluator for scikit-learn tree ensembles: every tree traversed at once in numpy.

``compile_model`` turns a fitted DecisionTree / RandomForest / ExtraTrees (classifier or
regressor, one output) into a ``Forest`` whose ``predict`` equals scikit-learn's bit for bit:
inputs are rounded to float32 and compared ``<=`` with the float64 thresholds as the Cython
code does, missing values follow ``missing_go_to_left``, and per-tree outputs are summed in
estimator order before the division by the tree count. Called by ``toque.serving.model`` for
the fast path (``Runner``); anything it does not recognise returns ``None`` and is served
another way. Each row's answer is computed on its own, so it does not depend on the batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.serving import runner

_TREE_TYPES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
)
_FOREST_TYPES = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclasses.dataclass(frozen=True)
class Forest:
    """All trees' nodes stacked; ``roots[t]`` is tree t's first node."""

    n_features: int
    roots: IntArray  # (T,)
    feature: IntArray  # (nodes,) 0 at leaves
    threshold: FloatArray  # (nodes,)
    # children[2 * node + go_right]; a leaf points at itself so extra steps keep it there.
    children: IntArray  # (2 * nodes,)
    missing_left: npt.NDArray[np.bool_]  # (nodes,)
    leaf_value: FloatArray  # (nodes, K): class fractions, or (nodes, 1) for a regressor
    depth: int
    classes: npt.NDArray[Any] | None  # None for a regressor
    # A lone decision tree's prediction is the argmax of its leaf, not of an average.
    average: bool
    feature_names: list[str] | None

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    def leaves(self, x: FloatArray) -> IntArray:
        """The leaf each row reaches in each tree, shape (rows, trees)."""
        rows = x.shape[0]
        # scikit-learn rounds to float32, then compares float32 <= float64 threshold; the
        # float32 values widened to float64 compare identically.
        with np.errstate(over="ignore"):  # beyond float32's range: ±inf, as in scikit-learn
            flat = np.ascontiguousarray(x, dtype=np.float32).astype(np.float64).ravel()
        base = np.repeat(np.arange(rows, dtype=np.intp) * self.n_features, self.roots.size)
        nodes = np.tile(self.roots, rows)
        has_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            value = flat[base + self.feature[nodes]]
            go_right = ~(value <= self.threshold[nodes])
            if has_nan:
                go_right &= ~(np.isnan(value) & self.missing_left[nodes])
            nodes = self.children[2 * nodes + go_right]
        return nodes.reshape(rows, self.roots.size)

    def outputs(self, x: FloatArray) -> FloatArray:
        """Averaged leaf values, shape (rows, K): class probabilities or (rows, 1) values."""
        per_tree = self.leaf_value[self.leaves(x).T]  # (T, rows, K)
        if not self.average:
            out: FloatArray = per_tree[0].copy()
            return out
        # scikit-learn adds tree by tree, in estimator order, into a zero array; a cumulative
        # sum is sequential by definition (a plain sum may pair terms up and round apart).
        total: FloatArray = np.cumsum(per_tree, axis=0)[-1]
        total /= self.roots.size
        return total

    def predict(self, x: FloatArray) -> tuple[npt.NDArray[Any], FloatArray]:
        """(predictions, outputs): class labels or values, plus ``outputs(x)``."""
        out = self.outputs(x)
        if self.classes is not None:
            return self.classes.take(np.argmax(out, axis=1)), out
        return out[:, 0].copy(), out


def compile_model(model: Any) -> Forest | None:
    """A ``Forest`` for a supported fitted estimator, else ``None``."""
    name = type(model).__name__
    if name in _FOREST_TYPES:
        trees = list(model.estimators_)
        average = True
    elif name in _TREE_TYPES:
        trees = [model]
        average = False
    else:
        return None
    if getattr(model, "n_outputs_", 1) != 1 or not trees:
        return None
    classifier = name.endswith("Classifier")
    roots, features, thresholds, children, missing, values = [], [], [], [], [], []
    offset, depth = 0, 0
    for estimator in trees:
        tree = estimator.tree_
        n = int(tree.node_count)
        left = np.asarray(tree.children_left, dtype=np.intp)
        right = np.asarray(tree.children_right, dtype=np.intp)
        leaf = left == -1
        own = np.arange(n, dtype=np.intp)
        left = np.where(leaf, own, left) + offset
        right = np.where(leaf, own, right) + offset
        pair = np.empty(2 * n, dtype=np.intp)
        pair[0::2], pair[1::2] = left, right
        roots.append(offset)
        features.append(np.where(leaf, 0, np.asarray(tree.feature, dtype=np.intp)))
        thresholds.append(np.asarray(tree.threshold, dtype=np.float64))
        children.append(pair)
        flags = getattr(tree, "missing_go_to_left", None)
        missing.append(np.zeros(n, bool) if flags is None else np.asarray(flags, dtype=bool))
        value = np.asarray(tree.value, dtype=np.float64)[:, 0, :]
        values.append(value[:, : len(model.classes_)] if classifier else value[:, :1])
        depth = max(depth, int(tree.max_depth))
        offset += n
    return Forest(
        n_features=int(model.n_features_in_),
        roots=np.asarray(roots, dtype=np.intp),
        feature=np.concatenate(features),
        threshold=np.concatenate(thresholds),
        children=np.concatenate(children),
        missing_left=np.concatenate(missing),
        leaf_value=np.ascontiguousarray(np.concatenate(values)),
        depth=depth,
        classes=np.asarray(model.classes_) if classifier else None,
        average=average,
        feature_names=[str(c) for c in model.feature_names_in_]
        if hasattr(model, "feature_names_in_")
        else None,
    )


class Runner:
    """The compiled forest as a fast path: probabilities come with every prediction."""

    kind = "forest"
    input = "matrix"
    float32 = False

    def __init__(self, compiled: Forest) -> None:
        self.compiled = compiled
        self.classes = compiled.classes

    def run(self, inputs: FloatArray, proba: bool) -> runner.Output:
        values, outputs = self.compiled.predict(inputs)
        if self.compiled.is_classifier:
            return runner.Output(
                values, outputs, class_index=np.argmax(outputs, axis=1), inputs=inputs
            )
        return runner.Output(values, inputs=inputs)
