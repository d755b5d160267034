"""scikit-learn models called natively: the sklearn flavour's own estimator, fed arrays.

``Sklearn`` holds the fitted estimator the ``sklearn`` flavour loads (the very object that
pyfunc's ``predict`` calls, ``PyFuncModel.get_raw_model()``) and feeds it what
``toque.serving.payload`` parsed, with no pyfunc and no schema enforcement in between:

- ``matrix`` input (every signature column numeric, no step that may address columns by
  name): one array as scikit-learn makes it of pyfunc's DataFrame: of the columns' common
  MLflow dtype (``toque.serving.signature.NUMPY_TYPES``; ``float`` columns rounded to
  float32 first), in column-major order;
- ``columns`` input (string columns, a ColumnTransformer or FunctionTransformer, a step
  that outputs pandas, a class from outside scikit-learn): one DataFrame per micro-batch,
  each column in its MLflow dtype, as pyfunc would hand it over.

A Pipeline's transforms run once for ``predict`` and ``predict_proba``, step by step as
``Pipeline.predict`` runs them when metadata routing is off; the final step's method is the
flavour's ``predict_fn``. ``run_parts`` runs the transforms once for several requests and
the final estimator on each request's rows alone: a micro-batch for a model whose transforms
answer each row on its own but whose final estimator (a linear model's BLAS sums) does not.
Whether the answers equal the flavour's own is checked at load (``toque.serving.exact``).
Built by ``toque.serving.model``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from toque.serving import payload, runner, signature

METHODS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba")
# Steps whose behaviour may depend on column names, or on anything but the values.
_NAME_SENSITIVE = ("ColumnTransformer", "FunctionTransformer", "make_column_selector")


def quiet_feature_names() -> None:
    """A matrix has no column names; scikit-learn warns on every call for a model fitted on
    a DataFrame. The loader has checked that the matrix's columns are the model's, in order."""
    warnings.filterwarnings(
        "ignore", message="X does not have valid feature names", category=UserWarning
    )


class Sklearn:
    kind = "sklearn"
    float32 = False

    def __init__(
        self,
        estimator: Any,
        schema: signature.Schema,
        method: str = "predict",
        frame: bool | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"predict_fn {method!r} has no fast path")
        self.estimator = estimator
        self.schema = schema
        self.method = method
        wants_frame = needs_frame(estimator, schema) if frame is None else frame
        self.input = "columns" if wants_frame else "matrix"
        self.head, self.tail = split(estimator)
        self.classes = classes_of(estimator) if method == "predict" else None
        self._dtype, self._float32 = matrix_layout(schema)
        self._kinds = {c.name: signature.NUMPY_TYPES.get(c.type) for c in schema.columns}

    @property
    def matrix_dtype(self) -> np.dtype[Any]:
        """The dtype of ``matrix``'s answer."""
        return self._dtype

    def model_input(self, inputs: Any) -> Any:
        """The array or DataFrame the estimator gets for ``inputs``."""
        if self.input == "columns":
            return pd.DataFrame(self.typed(inputs), copy=False)
        return self.matrix(inputs)

    def run(self, inputs: Any, proba: bool) -> runner.Output:
        x = self.model_input(inputs)
        xt = x
        for step in self.head:
            xt = step.transform(xt)
        values = runner.plain_values(getattr(self.tail, self.method)(xt))
        out = runner.Output(values, inputs=x if self.input == "columns" else inputs)
        if proba and self.classes is not None:
            try:
                out.proba = np.asarray(self.tail.predict_proba(xt), dtype=np.float64)
                if out.proba.shape != (len(values), len(self.classes)):
                    raise ValueError(f"predict_proba returned shape {out.proba.shape}")
            except Exception as error:
                out.proba, out.proba_error = None, error
        return out

    def run_parts(self, inputs: Any, proba: bool, bounds: list[tuple[int, int]]) -> runner.Output:
        """``run`` with the transforms on all rows and the final step on each part alone."""
        x = self.model_input(inputs)
        xt = x
        for step in self.head:
            xt = step.transform(xt)
        parts = []
        for start, stop in bounds:
            part = xt[start:stop]
            if isinstance(part, np.ndarray):
                # As the part's own transforms would have laid it out.
                part = (
                    np.asfortranarray(part) if xt.flags.f_contiguous else np.ascontiguousarray(part)
                )
            parts.append(part)
        values = [runner.plain_values(getattr(self.tail, self.method)(p)) for p in parts]
        out = runner.Output(np.concatenate(values), inputs=x if self.input == "columns" else inputs)
        if proba and self.classes is not None:
            try:
                out.proba = np.concatenate(
                    [np.asarray(self.tail.predict_proba(p), dtype=np.float64) for p in parts]
                )
            except Exception as error:
                out.proba_error = error
        return out

    def matrix(self, x: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        """The request matrix as scikit-learn gets pyfunc's DataFrame of it."""
        # Column-major, as a DataFrame's array is: BLAS sums a dot product in another order
        # for the other layout, and the last bit of a probability would differ.
        if self._float32.size:
            x = np.array(x, order="F")
            x[:, self._float32] = x[:, self._float32].astype(np.float32)
        if self._dtype.kind in "biu" and np.isnan(x).any():
            column = self.schema.columns[int(np.argwhere(np.isnan(x))[0, 1])]
            raise payload.PayloadError(
                f"column {column.name!r} ({column.type}) cannot hold a null value"
            )
        return np.asarray(x, dtype=self._dtype, order="F")

    def typed(self, columns: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Each signature column in its MLflow dtype, as pyfunc's DataFrame holds it."""
        data: dict[str, Any] = {}
        for name, kind in self._kinds.items():
            vector = columns[name]
            if kind is not None and kind != "float64":
                if kind != "float32" and np.isnan(vector).any():
                    raise payload.PayloadError(f"column {name!r} cannot hold a null value")
                vector = vector.astype(kind)
            data[name] = vector
        return data


def matrix_layout(schema: signature.Schema) -> tuple[np.dtype[Any], npt.NDArray[np.intp]]:
    """The matrix dtype scikit-learn gets from pyfunc's DataFrame, and the float32 columns.

    A DataFrame's array has the columns' common dtype; booleans with numbers give objects,
    which ``check_array`` turns into float64.
    """
    if not schema.named:
        return np.dtype(schema.dtype or "float64"), np.empty(0, np.intp)
    kinds = [signature.NUMPY_TYPES.get(c.type, "float64") for c in schema.columns]
    float32 = np.asarray(
        [j for j, c in enumerate(schema.columns) if c.type == "float"], dtype=np.intp
    )
    if "bool" in kinds and len(set(kinds)) > 1:
        return np.dtype(np.float64), float32
    common = np.result_type(*[np.dtype(k) for k in kinds]) if kinds else np.dtype(np.float64)
    return common, float32 if common != np.float32 else np.empty(0, np.intp)


def needs_frame(estimator: Any, schema: signature.Schema) -> bool:
    """Whether the model must get a DataFrame rather than a matrix."""
    if not schema.named:
        return False
    if not schema.numeric:
        return True
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != schema.names:
        return True
    for part in _components(estimator):
        kind = type(part)
        if kind.__name__ in _NAME_SENSITIVE or not kind.__module__.startswith("sklearn."):
            return True
        output = getattr(part, "_sklearn_output_config", None) or {}
        if output.get("transform") not in (None, "default"):
            return True
    return False


def _components(estimator: Any) -> list[Any]:
    found = [estimator]
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    found += [v for v in params.values() if hasattr(v, "get_params") and not isinstance(v, type)]
    return found


def split(estimator: Any) -> tuple[list[Any], Any]:
    """(transform steps, final estimator) of a plain Pipeline; ([], estimator) otherwise."""
    import sklearn
    from sklearn import pipeline

    if type(estimator) is not pipeline.Pipeline or sklearn.get_config().get(
        "enable_metadata_routing"
    ):
        return [], estimator
    steps = [step for _, step in estimator.steps]
    final = steps[-1]
    if final is None or isinstance(final, str):
        return [], estimator
    head = [s for s in steps[:-1] if s is not None and not isinstance(s, str)]
    inner, tail = split(final)
    return head + inner, tail


def classes_of(estimator: Any) -> npt.NDArray[Any] | None:
    """A classifier's classes when it offers ``predict_proba`` (one flat list of them)."""
    # Pipeline and SVC hide predict_proba (available_if) when it would not work.
    classes = getattr(estimator, "classes_", None)
    if not callable(getattr(estimator, "predict_proba", None)) or classes is None:
        return None
    array = np.asarray(classes)
    return array if array.ndim == 1 else None
