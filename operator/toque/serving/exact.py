"""Does a fast path answer what the flavour's own ``predict`` answers? Checked once, at load.

The rows: the trainer's validation sample (``toque/validation-sample.parquet``, inputs plus
the flavour's predictions there) when the run has one, else rows made from the feature bins
(edges and categories), else seeded random numbers. They are sent through
``toque.serving.payload`` twice, as a request to the fast path and as the DataFrame the
pyfunc path would predict on; the reference is pyfunc's ``predict`` (and the estimator's
``predict_proba``) on that DataFrame, here, now. scikit-learn and the compiled forest must
agree bit for bit; float32 runtimes (PyTorch, ONNX Runtime) within ``RTOL``/``ATOL``, with
the same labels where the values are labels. Any difference refuses the fast path.

The same rows tell whether micro-batching is exact for this model: the answers for all rows
in one call must equal those of one call per row and of calls of ``CHUNK`` rows (BLAS
kernels make a linear model's dot products depend on the batch's shape, trees do not):
``EXACT``. Failing that, a scikit-learn Pipeline may batch its transforms only, the final
estimator called on each request's rows alone (``run_parts``): ``TRANSFORMS``. And
they time a call of one row and of all rows, the cost model that decides what runs on the
event loop. A model whose reference fails on the rows (made-up categories, say) is served
on its fast path by construction, without micro-batching. Called by ``toque.serving.model``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from toque.core import redact
from toque.serving import payload, runner, signature

LOG = logging.getLogger("toque.serve")
RTOL = 1e-5
ATOL = 1e-6
MAX_ROWS = 64
CHUNK = 7
PREDICTION = "toque.prediction"  # the validation sample's column of the flavour's predictions
# How rows of several requests may share a call.
EXACT = "exact"  # one call for all
TRANSFORMS = "transforms"  # a Pipeline's transforms for all, its final step per request
OFF = "off"  # a call per request


@dataclasses.dataclass(frozen=True)
class Cost:
    """Seconds a call takes: ``fixed + per_row * rows``."""

    fixed: float
    per_row: float

    def __call__(self, rows: int) -> float:
        return self.fixed + self.per_row * rows


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # why the fast path is refused; or how it was checked
    rows: int  # rows compared; 0: nothing to compare on, accepted by construction
    batching: str  # EXACT, TRANSFORMS or OFF
    cost: Cost


def check(
    fast: runner.Runner,
    pyfunc: Any,
    estimator: Any,
    schema: signature.Schema | None,
    sample: pd.DataFrame | None,
    feature_bins: dict[str, dict[str, Any]],
) -> Verdict:
    """Compare ``fast`` with pyfunc (and ``estimator.predict_proba``) on the check rows."""
    rows = check_rows(schema, sample, feature_bins)
    logged = None
    if sample is not None and _usable(schema, sample) and PREDICTION in sample:
        logged = sample[PREDICTION].head(MAX_ROWS).to_numpy()
    fast_inputs, frame = _parse(fast, schema, rows)
    try:
        reference = runner.plain_values(pyfunc.predict(frame))
        reference_proba = None
        if fast.classes is not None and estimator is not None:
            reference_proba = np.asarray(estimator.predict_proba(frame), dtype=np.float64)
    except Exception as error:
        LOG.info(
            "the fast path is checked by construction only: pyfunc refuses the check rows (%s)",
            _short(error),
        )
        return Verdict(True, "by construction", 0, OFF, _time(fast, fast_inputs, len(rows)))
    try:
        out = fast.run(fast_inputs, reference_proba is not None)
    except Exception as error:
        return Verdict(False, f"fast path failed: {_short(error)}", len(rows), OFF, Cost(0, 0))
    tolerance = fast.float32
    if not same(out.values, reference, tolerance):
        return Verdict(False, "predictions differ from pyfunc's", len(rows), OFF, Cost(0, 0))
    if reference_proba is not None and (
        out.proba is None or not same(out.proba, reference_proba, tolerance)
    ):
        return Verdict(
            False, "probabilities differ from predict_proba's", len(rows), OFF, Cost(0, 0)
        )
    if logged is not None and not same(reference, _logged(logged, reference), tolerance):
        LOG.warning(
            "the model predicts the trainer's validation sample differently here than in "
            "training (library versions?); serving it as it predicts here"
        )
    batching = _batching(fast, fast_inputs, out, len(rows))
    return Verdict(True, "checked", len(rows), batching, _time(fast, fast_inputs, len(rows)))


def same(a: Any, b: Any, tolerance: bool = False) -> bool:
    """Equal shapes and values (NaN equals NaN); within RTOL/ATOL for float32 runtimes."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        if not tolerance or a.size != b.size:
            return False
        a, b = a.reshape(-1), b.reshape(-1)
    floats = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    if floats and tolerance:
        return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
    if floats:
        return bool(np.array_equal(a, b, equal_nan=True))
    if (a.dtype.kind in "OUS") != (b.dtype.kind in "OUS"):
        return False
    return bool(np.array_equal(a, b))


def check_rows(
    schema: signature.Schema | None,
    sample: pd.DataFrame | None,
    feature_bins: dict[str, dict[str, Any]],
) -> list[list[Any]]:
    """Up to ``MAX_ROWS`` rows in signature order: the sample's, or made up."""
    if schema is None:
        return []
    if sample is not None and _usable(schema, sample):
        part = sample[schema.names].head(MAX_ROWS).astype(object)
        return [[_plain(v) for v in row] for row in part.itertuples(index=False)]
    rng = np.random.default_rng(0)
    count = 16
    if not schema.named:
        made: list[list[Any]] = rng.normal(size=(count, schema.width)).round(3).tolist()
        return made
    columns = [_made_up(c, feature_bins.get(c.name, {}), count, rng) for c in schema.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def _usable(schema: signature.Schema | None, sample: Any) -> bool:
    """The sample holds every signature column (and the check takes its rows)."""
    return (
        schema is not None
        and schema.named
        and isinstance(sample, pd.DataFrame)
        and len(sample) > 0
        and set(schema.names) <= set(sample.columns)
    )


def _made_up(
    column: signature.Column, spec: dict[str, Any], count: int, rng: np.random.Generator
) -> list[Any]:
    edges = [float(e) for e in spec.get("edges") or []]
    categories = [str(c) for c in spec.get("categories") or []]
    if column.type == "string":
        return [categories[i % len(categories)] if categories else "" for i in range(count)]
    if edges:
        points = np.interp(np.linspace(0, len(edges) - 1, count), np.arange(len(edges)), edges)
    elif categories:
        points = np.asarray([_number(categories[i % len(categories)]) for i in range(count)])
    else:
        points = rng.normal(size=count).round(3)
    if column.type in signature.INTEGER:
        return [int(v) for v in np.round(points)]
    if column.type == "boolean":
        return [bool(round(v)) for v in points]
    return [float(v) for v in points]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float(text.lower() == "true")


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _parse(
    fast: runner.Runner, schema: signature.Schema | None, rows: list[list[Any]]
) -> tuple[Any, pd.DataFrame]:
    split: dict[str, Any] = {"data": rows}
    if schema is not None and schema.named:
        split["columns"] = schema.names
    body = orjson.dumps({"dataframe_split": split}, option=orjson.OPT_SERIALIZE_NUMPY)
    columns = fast.input == "columns"
    batch = payload.parse_invocations(body, schema, not columns, columns)
    frame = payload.parse_invocations(body, schema, False).frame
    assert frame is not None
    return (batch.columns if columns else batch.matrix), frame


def _logged(logged: npt.NDArray[Any], reference: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if reference.dtype.kind != "O":
        try:
            return logged.astype(reference.dtype)
        except (TypeError, ValueError):
            return logged
    return logged


def _take(inputs: Any, start: int, stop: int) -> Any:
    if isinstance(inputs, dict):
        return {name: vector[start:stop] for name, vector in inputs.items()}
    return inputs[start:stop]


def _batching(fast: runner.Runner, inputs: Any, whole: runner.Output, rows: int) -> str:
    """How rows of several requests may share a call and answer as calls of their own."""
    if rows < 2:
        return OFF
    want = whole.proba is not None
    alone = {
        size: [fast.run(_take(inputs, i, i + size), want) for i in range(0, rows, size)]
        for size in (1, CHUNK)
    }
    if all(_agree(parts, whole, fast.float32) for parts in alone.values()):
        return EXACT
    run_parts = getattr(fast, "run_parts", None)
    if run_parts is None or not getattr(fast, "head", None):
        return OFF
    for size, parts in alone.items():
        bounds = [(i, min(rows, i + size)) for i in range(0, rows, size)]
        if not _agree(parts, run_parts(inputs, want, bounds), fast.float32):
            return OFF
    return TRANSFORMS


def _agree(parts: list[runner.Output], whole: runner.Output, tolerance: bool) -> bool:
    """The parts' answers, end to end, are the whole's."""
    if not same(np.concatenate([p.values for p in parts]), whole.values, tolerance):
        return False
    if whole.proba is None:
        return True
    probas = [p.proba for p in parts if p.proba is not None]
    return len(probas) == len(parts) and same(np.concatenate(probas), whole.proba, tolerance)


def _time(fast: runner.Runner, inputs: Any, rows: int) -> Cost:
    """The cheapest of three calls of one row and of all rows: a line through both."""
    if rows == 0:
        return Cost(0.001, 0.0)
    want = fast.classes is not None

    def best(part: Any) -> float:
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            try:
                fast.run(part, want)
            except Exception:
                return 0.001
            seconds.append(time.perf_counter() - started)
        return min(seconds)

    one, many = best(_take(inputs, 0, 1)), best(inputs)
    per_row = max(0.0, (many - one) / max(1, rows - 1))
    return Cost(one, per_row)


def _short(error: BaseException) -> str:
    return redact.redact(f"{type(error).__name__}: {error}").splitlines()[0][:300]
