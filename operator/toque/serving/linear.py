"""Linear scikit-learn models evaluated with numpy, without scikit-learn's per-call checks.

A Pipeline of scalers (``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``), optionally
led by a ``ColumnTransformer`` of scalers, dense ``OneHotEncoder``\\ s and numeric
passthrough columns, ending in ``LogisticRegression`` or a linear regressor
(``LinearRegression``, ``Ridge``, ``Lasso``, ``ElasticNet``): about 40 µs a request where
scikit-learn spends milliseconds validating its input, building DataFrames and indexing
columns in every step.

The arithmetic is scikit-learn's own, operation for operation, on arrays of the same dtype
and memory layout: the scalers' in-place ``-=``/``/=``/``*=``/``+=``/clip, the one-hot
blocks placed as ``ColumnTransformer``'s ``np.hstack`` places them, ``X @ coef_.T +
intercept_`` (BLAS, whose sums depend on the layout and the number of rows), ``expit`` or
``softmax`` for probabilities. So the answers are the flavour's bit for bit, which
``toque.serving.exact`` checks at load like any fast path's; as with
``toque.serving.native``, the final step runs on each request's rows alone in a
micro-batch (``run_parts``). Requests this evaluator does not model exactly (a categorical
value that is not a string) go to ``toque.serving.native.Sklearn`` on the same estimator.
Built by ``toque.serving.model``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.serving import native, runner, signature

_SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")
_REGRESSORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet")
_OPS = {
    "sub": np.subtract,
    "div": np.true_divide,
    "mul": np.multiply,
    "add": np.add,
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """One fitted scaler's in-place operations, in scikit-learn's order."""

    ops: tuple[tuple[str, Any], ...]

    def apply(self, x: npt.NDArray[np.float64]) -> None:
        for op, arg in self.ops:
            if op == "clip":
                np.clip(x, arg[0], arg[1], out=x)
            else:
                _OPS[op](x, arg, out=x)


@dataclasses.dataclass(frozen=True)
class Block:
    """One ``ColumnTransformer`` part: scaled or passed-through numbers, or one-hot codes."""

    columns: tuple[str, ...]
    width: int
    scale: Scale | None = None
    # One-hot: per column, category → position in the block; unknown categories error?
    codes: tuple[dict[str, int], ...] | None = None
    unknown_error: bool = False
    # Memory order scikit-learn gives it: "F" from a DataFrame, "C" from a sparse toarray.
    order: str = "F"


@dataclasses.dataclass(frozen=True)
class Final:
    """The linear step: ``scores = x @ coef + intercept`` and what a prediction makes of it."""

    coef: npt.NDArray[np.float64]  # coef_.T (classifiers) or coef_ (1-D, regressors)
    intercept: Any
    classes: npt.NDArray[Any] | None  # None: a regressor
    softmax: bool  # a multinomial classifier: softmax, not expit

    def scores(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = x @ self.coef + self.intercept
        if self.classes is not None and out.ndim > 1 and out.shape[1] == 1:
            out = out.reshape(-1)
        return out

    def answer(
        self, x: npt.NDArray[np.float64], proba: bool
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp] | None, npt.NDArray[np.float64] | None]:
        """(values, class index, probabilities) as predict and predict_proba answer them."""
        scores = self.scores(x)
        if self.classes is None:
            return scores, None, None
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        values = np.take(self.classes, index, axis=0)
        if not proba:
            return values, index, None
        if self.softmax:
            # predict_proba calls decision_function again: a fresh array, softmax in place.
            p = np.array(scores)
            p -= np.max(p, axis=1).reshape(-1, 1)
            np.exp(p, out=p)
            p /= np.sum(p, axis=1).reshape(-1, 1)
            return values, index, p
        positive = _expit()(scores)
        return values, index, np.stack([1 - positive, positive], axis=1)


class Linear:
    """The runner: ``input`` as ``toque.serving.native.Sklearn`` takes it for this model."""

    kind = "linear"
    float32 = False

    def __init__(
        self,
        fallback: native.Sklearn,
        blocks: tuple[Block, ...] | None,
        steps: tuple[Scale, ...],
        final: Final,
    ) -> None:
        self.fallback = fallback
        self.input = fallback.input
        self.classes = fallback.classes
        self.head = fallback.head  # exact._batching: transforms to batch (run_parts)
        self.blocks = blocks
        self.steps = steps
        self.final = final

    def transform(self, inputs: Any) -> tuple[npt.NDArray[np.float64], Any]:
        """(the final step's input, what metrics and the sampler read)."""
        if self.blocks is None:
            # The matrix as pyfunc's DataFrame gives it (column-major), copied by the first
            # scaler's validation, then scaled in place.
            x = np.array(self.fallback.matrix(inputs), dtype=np.float64, order="F")
            seen: Any = inputs
        else:
            typed = self.fallback.typed(inputs)
            rows = len(next(iter(typed.values()))) if typed else 0
            # np.hstack lays the result out after its parts, as ColumnTransformer's does.
            x = np.hstack([_block(b, typed, rows) for b in self.blocks])
            seen = typed
        for step in self.steps:
            step.apply(x)
        return x, seen

    def run(self, inputs: Any, proba: bool) -> runner.Output:
        if not self._plain(inputs):
            return self.fallback.run(inputs, proba)
        x, seen = self.transform(inputs)
        values, index, p = self.final.answer(x, proba and self.classes is not None)
        return runner.Output(
            values, proba=p, class_index=index if self.classes is not None else None, inputs=seen
        )

    def run_parts(self, inputs: Any, proba: bool, bounds: list[tuple[int, int]]) -> runner.Output:
        """``run`` with the transforms on all rows and the final step on each part alone."""
        if not self._plain(inputs):
            return self.fallback.run_parts(inputs, proba, bounds)
        x, seen = self.transform(inputs)
        want = proba and self.classes is not None
        answers = []
        for start, stop in bounds:
            part = x[start:stop]
            # As the part's own transforms would have laid it out.
            part = np.asfortranarray(part) if x.flags.f_contiguous else np.ascontiguousarray(part)
            answers.append(self.final.answer(part, want))
        values = np.concatenate([a[0] for a in answers])
        index = None
        if self.classes is not None:
            index = np.concatenate([a[1] for a in answers if a[1] is not None])
        p = np.concatenate([a[2] for a in answers if a[2] is not None]) if want else None
        return runner.Output(values, proba=p, class_index=index, inputs=seen)

    def _plain(self, inputs: Any) -> bool:
        """Every one-hot column holds strings only (else scikit-learn's own checks decide)."""
        if self.blocks is None:
            return True
        for block in self.blocks:
            if block.codes is not None:
                for name in block.columns:
                    if not all(type(v) is str for v in inputs[name]):
                        return False
        return True


def _block(block: Block, typed: dict[str, npt.NDArray[Any]], rows: int) -> npt.NDArray[np.float64]:
    out = np.zeros((rows, block.width), dtype=np.float64, order="C" if block.order == "C" else "F")
    if block.codes is None:
        for j, name in enumerate(block.columns):
            out[:, j] = typed[name]
        if block.scale is not None:
            block.scale.apply(out)
        return out
    start = 0
    for name, codes in zip(block.columns, block.codes, strict=True):
        for i, value in enumerate(typed[name].tolist()):
            k = codes.get(value)
            if k is not None:
                out[i, start + k] = 1.0
            elif block.unknown_error:
                raise ValueError(
                    f"Found unknown categories [{value!r}] in column {name!r} during transform"
                )
        start += len(codes)
    return out


def compile_model(
    estimator: Any, schema: signature.Schema, method: str = "predict"
) -> Linear | None:
    """The linear evaluator of ``estimator``, or None when it is not one this module models."""
    if method != "predict":
        return None
    fallback = native.Sklearn(estimator, schema, method)
    head, tail = fallback.head, fallback.tail
    final = _final(tail)
    if final is None:
        return None
    blocks: tuple[Block, ...] | None = None
    rest = list(head)
    if rest and type(rest[0]).__name__ == "ColumnTransformer":
        blocks = _column_transformer(rest.pop(0), fallback, schema)
        if blocks is None:
            return None
    elif fallback.input != "matrix" or fallback.matrix_dtype != np.float64:
        return None
    steps = []
    for step in rest:
        scale = _scale(step)
        if scale is None:
            return None
        steps.append(scale)
    if not steps and blocks is None:
        # A bare linear model validates without copying: same layout, nothing to gain.
        return None
    return Linear(fallback, blocks, tuple(steps), final)


def _final(tail: Any) -> Final | None:
    name = type(tail).__name__
    if not type(tail).__module__.startswith("sklearn.linear_model"):
        return None
    coef = getattr(tail, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64:
        return None
    intercept = tail.intercept_
    if name == "LogisticRegression":
        classes = np.asarray(tail.classes_)
        if coef.ndim != 2 or classes.ndim != 1 or len(classes) < 2:
            return None
        return Final(coef.T, intercept, classes, softmax=len(classes) > 2)
    if name in _REGRESSORS and coef.ndim == 1:
        return Final(coef, intercept, None, softmax=False)
    return None


def _scale(step: Any) -> Scale | None:
    """A fitted scaler's operations (dense input), or None for anything else."""
    name = type(step).__name__
    if name not in _SCALERS or not type(step).__module__.startswith("sklearn.preprocessing"):
        return None
    if (getattr(step, "_sklearn_output_config", None) or {}).get("transform") not in (
        None,
        "default",
    ):
        return None
    ops: list[tuple[str, Any]] = []
    if name == "StandardScaler":
        if step.with_mean:
            ops.append(("sub", np.asarray(step.mean_, dtype=np.float64)))
        if step.with_std:
            ops.append(("div", np.asarray(step.scale_, dtype=np.float64)))
    elif name == "MinMaxScaler":
        ops += [("mul", step.scale_), ("add", step.min_)]
        if step.clip:
            ops.append(("clip", (float(step.feature_range[0]), float(step.feature_range[1]))))
    else:
        ops.append(("div", step.scale_))
        if getattr(step, "clip", False):
            ops.append(("clip", (-1.0, 1.0)))
    return Scale(tuple(ops))


def _column_transformer(
    ct: Any, fallback: native.Sklearn, schema: signature.Schema
) -> tuple[Block, ...] | None:
    """The blocks of a dense ColumnTransformer on named columns, in output order."""
    names = getattr(ct, "feature_names_in_", None)
    indices = getattr(ct, "_transformer_to_input_indices", None)
    if (
        names is None
        or not isinstance(indices, dict)
        or getattr(ct, "sparse_output_", True)
        or fallback.input != "columns"
        or (getattr(ct, "_sklearn_output_config", None) or {}).get("transform")
        not in (None, "default")
    ):
        return None
    names = [str(n) for n in names]
    kinds = {c.name: (c.type, signature.NUMPY_TYPES.get(c.type)) for c in schema.columns}
    if not set(names) <= set(kinds):
        return None
    placed: list[tuple[int, Block]] = []
    for name, transformer, _ in ct.transformers_:
        columns = tuple(names[i] for i in indices.get(name, []))
        if not columns or (isinstance(transformer, str) and transformer == "drop"):
            continue
        where = ct.output_indices_.get(name)
        if not isinstance(where, slice) or where.start is None:
            return None
        if _passthrough(transformer):
            if not _numeric(columns, kinds):
                return None
            block = Block(columns, len(columns))
        elif type(transformer).__name__ == "OneHotEncoder":
            compiled = _one_hot(transformer, columns, kinds)
            if compiled is None:
                return None
            block = compiled
        else:
            scale = _scale(transformer)
            if scale is None or not _numeric(columns, kinds):
                return None
            block = Block(columns, len(columns), scale=scale)
        if where.stop - where.start != block.width:
            return None
        placed.append((where.start, block))
    placed.sort(key=lambda p: p[0])
    return tuple(b for _, b in placed) or None


def _passthrough(transformer: Any) -> bool:
    """'passthrough', or the identity FunctionTransformer a fitted ColumnTransformer holds."""
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return (
        type(transformer).__name__ == "FunctionTransformer"
        and type(transformer).__module__.startswith("sklearn.preprocessing")
        and transformer.func is None
        and (getattr(transformer, "_sklearn_output_config", None) or {}).get("transform")
        in (None, "default")
    )


def _numeric(columns: tuple[str, ...], kinds: dict[str, tuple[str, str | None]]) -> bool:
    """Columns scikit-learn turns into float64 exactly (not strings, not float32)."""
    return all(kinds[c][0] != "string" and kinds[c][1] not in ("float32",) for c in columns)


def _one_hot(
    encoder: Any, columns: tuple[str, ...], kinds: dict[str, tuple[str, str | None]]
) -> Block | None:
    """A float64 OneHotEncoder of string columns into string categories, no drop; its
    sparse output the ColumnTransformer densifies (``toarray``: row-major)."""
    if (
        encoder.dtype not in (np.float64, "float64")
        or getattr(encoder, "drop_idx_", None) is not None
        or getattr(encoder, "_infrequent_enabled", True)
        or encoder.handle_unknown not in ("ignore", "error", "infrequent_if_exist")
        or len(encoder.categories_) != len(columns)
        or any(kinds[c][0] != "string" for c in columns)
    ):
        return None
    codes = []
    for categories in encoder.categories_:
        values = list(categories)
        if not all(type(v) is str for v in values) or len(set(values)) != len(values):
            return None
        codes.append({v: k for k, v in enumerate(values)})
    return Block(
        columns,
        sum(len(c) for c in codes),
        codes=tuple(codes),
        unknown_error=encoder.handle_unknown == "error",
        order="C",
    )


def _expit() -> Any:
    """scipy's expit, what scikit-learn's ``_expit`` calls for numpy arrays."""
    return importlib.import_module("scipy.special").expit
