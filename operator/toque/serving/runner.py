"""What every fast path answers, and the shape of a model's raw answer made plain.

A runner (``toque.serving.native.Sklearn``, ``toque.serving.tensor.Torch`` and ``Onnx``)
takes the inputs ``toque.serving.payload`` parsed (a float64 matrix, or one vector per
column) and returns an ``Output``. ``toque.serving.model.Predictor`` drives it;
``toque.serving.exact`` checks it against the flavour's own ``predict`` at load.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass
class Output:
    values: npt.NDArray[Any]  # one prediction per row, as the flavour's predict answers
    proba: npt.NDArray[np.float64] | None = None  # asked for and offered: (rows, classes)
    proba_error: Exception | None = None  # asked for, and predict_proba failed
    class_index: npt.NDArray[np.intp] | None = None  # index into classes, when at hand
    # What the metrics and the sampler read: the request matrix, or the batch's DataFrame.
    inputs: Any = None


class Runner(Protocol):
    kind: str  # the fast path's name: "sklearn", "pytorch", "onnx"
    input: str  # "matrix": a float64 matrix in signature order; "columns": one vector each
    float32: bool  # a float32 runtime: checked within a tolerance, not bit for bit
    classes: npt.NDArray[Any] | None  # predict_proba's columns; None: no probabilities

    def run(self, inputs: Any, proba: bool) -> Output: ...


def plain_values(result: Any) -> npt.NDArray[Any]:
    """A model's answer as one value per row (a one-column frame or matrix is flattened)."""
    if hasattr(result, "to_numpy"):
        result = result.to_numpy()
    values = np.asarray(result)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    return values
