"""Request bodies → model inputs, validated against the signature with errors that name the
column, row or shape at fault.

Two body formats: MLflow's ``/invocations`` (``dataframe_split``, ``dataframe_records``,
``instances``, ``inputs``) and the Open Inference Protocol v2 ``infer`` request (one 2-D
tensor ``[N, F]`` in signature column order, or one 1-D tensor per column). Both become a
``Batch``: a float64 matrix in signature order for the numeric fast paths (no DataFrame on
that path), one validated vector per signature column for models that take a DataFrame
(``columns``: float64 for numeric columns, object for strings; the model's DataFrame is
built once per micro-batch by ``toque.serving.native``), or a DataFrame for the generic
pyfunc path. A feedback body is an ``infer`` request
plus ``"labels"``, one true label per row (``parse_feedback``), checked against the model's
classes (``class_labels``) or as numbers for regressors (``numeric_labels``). Called by
``toque.serving.app`` for each request; raises ``PayloadError`` (an HTTP 4xx) on anything it
cannot accept.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from toque.serving import signature

INVOCATION_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
OIP_NUMERIC = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
    }
)
_NUMBER = (int, float)


class PayloadError(Exception):
    """A request the server rejects; ``status`` is the HTTP code (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Batch:
    rows: int
    matrix: npt.NDArray[np.float64] | None = None  # numeric path, signature column order
    frame: pd.DataFrame | None = None  # generic path
    # column path: signature name → float64 (numeric) or object (string) vector
    columns: dict[str, npt.NDArray[Any]] | None = None
    outputs: tuple[str, ...] = ()  # OIP outputs asked for by name


def loads(body: bytes) -> Any:
    if not body:
        raise PayloadError("empty request body; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise PayloadError(f"request body is not valid JSON: {error}") from None


# Intermediate tables: rows in a known column order, or columns by name.
@dataclasses.dataclass
class _Rows:
    data: Any  # list of row lists, or an ndarray
    names: list[str] | None  # None: the schema's order


@dataclasses.dataclass
class _Columns:
    data: dict[str, Any]


def parse_invocations(
    body: bytes, schema: signature.Schema | None, numeric: bool, columns: bool = False
) -> Batch:
    document = loads(body)
    if not isinstance(document, dict):
        raise PayloadError("request body must be a JSON object with one of " + _keys())
    present = [k for k in INVOCATION_KEYS if k in document]
    if len(present) != 1:
        raise PayloadError(f"request body must have exactly one of {_keys()}, got {present}")
    key = present[0]
    value = document[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise PayloadError('dataframe_split must be {"columns": [...], "data": [[...], ...]}')
        names = value.get("columns")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(c, str) for c in names)
        ):
            raise PayloadError("dataframe_split.columns must be a list of column names")
        table: _Rows | _Columns = _Rows(value["data"], names)
    elif key == "dataframe_records":
        table = _records(value, key)
    elif isinstance(value, dict):
        table = _Columns(value)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        table = _records(value, key)
    elif isinstance(value, list):
        table = _Rows(value, None)
    else:
        raise PayloadError(f"{key} must be a list of rows or an object of columns")
    return _batch(table, schema, numeric, columns)


def parse_infer(
    body: bytes, schema: signature.Schema | None, numeric: bool, columns: bool = False
) -> Batch:
    return _infer(loads(body), schema, numeric, columns)


def parse_feedback(
    body: bytes, schema: signature.Schema | None, numeric: bool, columns: bool = False
) -> tuple[Batch, list[Any]]:
    """``{"inputs": <as infer>, "labels": [one per row], "parameters"?}`` → batch, labels."""
    document = loads(body)
    if not isinstance(document, dict) or "labels" not in document:
        raise PayloadError(
            'a feedback request is {"inputs": [<as for infer>], "labels": [one true label '
            "per row]}; labels are missing"
        )
    labels = document["labels"]
    if not isinstance(labels, list):
        raise PayloadError(f"labels must be a list (one per row), got {type(labels).__name__}")
    batch = _infer(document, schema, numeric, columns)
    if len(labels) != batch.rows:
        raise PayloadError(f"{len(labels)} label(s) for {batch.rows} row(s); send one per row")
    for i, label in enumerate(labels):
        if label is None or not isinstance(label, str | int | float):
            raise PayloadError(f"label in row {i} must be a string or a number, got {label!r}")
    return batch, labels


def class_labels(labels: list[Any], classes: npt.NDArray[Any]) -> list[str]:
    """Each label as ``str`` of the model's class it equals; a label of no class is a 400.

    A label matches a class of its own kind (string, boolean, number; ``1`` and ``1.0`` are
    the same class): the label ``"1"`` for the class ``1`` is a type error, not a match.
    """
    known = classes.tolist()
    by_value = {c: c for c in known}
    kinds = {_kind(c) for c in known}
    out = []
    for i, label in enumerate(labels):
        match = by_value.get(label, _NO_CLASS)
        if match is _NO_CLASS or _kind(match) != _kind(label):
            if _kind(label) not in kinds:
                raise PayloadError(
                    f"label {label!r} in row {i} is a {_kind(label)}; this model's classes "
                    f"are {' and '.join(sorted(f'{k}s' for k in kinds))}: {known}"
                )
            raise PayloadError(
                f"label {label!r} in row {i} is not one of the model's classes {known}"
            )
        out.append(str(match))
    return out


_NO_CLASS = object()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def numeric_labels(labels: list[Any]) -> npt.NDArray[np.float64]:
    """A regressor's true values; a string, a boolean or a non-finite number is a 400."""
    for i, label in enumerate(labels):
        if isinstance(label, bool | str) or not np.isfinite(label):
            raise PayloadError(
                f"label {label!r} in row {i}: this model predicts numbers; send finite numbers"
            )
    return np.asarray(labels, dtype=np.float64)


def _infer(
    document: Any, schema: signature.Schema | None, numeric: bool, columns: bool = False
) -> Batch:
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise PayloadError(
            'an infer request is {"inputs": [{"name", "shape", "datatype", "data"}]}'
        )
    tensors = document["inputs"]
    if not tensors:
        raise PayloadError("inputs is empty")
    for tensor in tensors:
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= set(tensor):
            raise PayloadError("each input tensor needs name, shape, datatype and data")
        shape = tensor["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PayloadError(f"input {tensor['name']!r}: shape must be a list of sizes")
        if numeric and tensor["datatype"] not in OIP_NUMERIC:
            raise PayloadError(
                f"input {tensor['name']!r}: datatype {tensor['datatype']} is not numeric"
            )
    outputs = _requested_outputs(document.get("outputs"))
    names = schema.names if schema and schema.named else []
    if len(tensors) == 1 and (len(tensors[0]["shape"]) == 2 or tensors[0]["name"] not in names):
        tensor = tensors[0]
        shape = tensor["shape"]
        if len(shape) != 2:
            raise PayloadError(
                f"input {tensor['name']!r}: expected a 2-D tensor [rows, features], got shape "
                f"{shape}; or send one 1-D tensor per column named {names}"
            )
        matrix = _tensor(tensor, shape)
        batch = _batch(_Rows(matrix, None), schema, numeric, columns)
    else:
        named: dict[str, Any] = {}
        for tensor in tensors:
            shape = tensor["shape"]
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise PayloadError(
                    f"input {tensor['name']!r}: a per-column tensor must have shape [rows], "
                    f"got {shape}"
                )
            named[str(tensor["name"])] = _tensor(tensor, shape).reshape(-1)
        batch = _batch(_Columns(named), schema, numeric, columns)
    batch.outputs = outputs
    return batch


def _requested_outputs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(o, dict) and "name" in o for o in value):
        raise PayloadError('outputs must be a list of {"name": ...}')
    return tuple(str(o["name"]) for o in value)


def _tensor(tensor: dict[str, Any], shape: list[int]) -> npt.NDArray[Any]:
    name = tensor["name"]
    try:
        array = np.asarray(tensor["data"])
    except ValueError:
        raise PayloadError(f"input {name!r}: data is ragged; send a flat or nested list") from None
    expected = int(np.prod(shape))
    if array.size != expected:
        raise PayloadError(
            f"input {name!r}: shape {shape} needs {expected} values, data has {array.size}"
        )
    if array.dtype.kind == "O":
        raise PayloadError(f"input {name!r}: data holds nulls or mixed types")
    return array.reshape(shape)


def _records(value: Any, key: str) -> _Columns | _Rows:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise PayloadError(f"{key} must be a list of objects (one per row)")
    if not value:
        return _Rows([], None)
    names = list(value[0])
    if all(len(r) == len(names) for r in value):
        try:
            return _Rows([[r[n] for n in names] for r in value], names)
        except KeyError:
            pass
    # Rows with different keys: columns with gaps (None), which validation then names.
    keys = dict.fromkeys(k for r in value for k in r)
    return _Columns({k: [r.get(k) for r in value] for k in keys})


def _batch(
    table: _Rows | _Columns, schema: signature.Schema | None, numeric: bool, columns: bool = False
) -> Batch:
    if schema is None or not schema.named:
        width = schema.width if schema else 0
        return _unnamed(table, width, numeric)
    names = schema.names
    if isinstance(table, _Columns):
        missing = [n for n in names if n not in table.data and _required(schema, n)]
        if missing:
            raise PayloadError(f"missing column(s): {', '.join(missing)}")
        lengths = {n: len(table.data[n]) for n in names if n in table.data}
        if len(set(lengths.values())) > 1:
            raise PayloadError(f"columns have different lengths: {lengths}")
        rows = next(iter(lengths.values()), 0)
        ordered = {n: table.data.get(n, [None] * rows) for n in names}
        if columns:
            return Batch(rows, columns=_typed_columns(ordered, schema))
        if not numeric:
            return Batch(rows, frame=_frame(pd.DataFrame(ordered), schema))
        parts = [_column_vector(ordered[c.name], c) for c in schema.columns]
        matrix = np.column_stack(parts) if parts else np.empty((rows, 0))
        return Batch(rows, matrix=_check_integers(matrix, schema))
    given = table.names
    if given is None or given == names:
        if columns:
            return _columns_of_rows(table.data, schema)
        return _positional(table.data, schema, numeric)
    missing = [n for n in names if n not in given and _required(schema, n)]
    if missing:
        raise PayloadError(f"missing column(s): {', '.join(missing)}")
    if len(set(given)) != len(given):
        raise PayloadError("duplicate column names")
    listed = _row_list(table.data, len(given))
    position = {n: i for i, n in enumerate(given)}
    by_name = {
        n: [r[position[n]] for r in listed] if n in position else [None] * len(listed)
        for n in names
    }
    return _batch(_Columns(by_name), schema, numeric, columns)


def _columns_of_rows(data: Any, schema: signature.Schema) -> Batch:
    """Rows in signature order → one vector per column (a 2-D tensor is sliced, not copied)."""
    if isinstance(data, np.ndarray) and data.ndim == 2:
        if data.shape[1] != schema.width:
            raise PayloadError(f"expected {schema.width} values per row, got {data.shape[1]}")
        sliced = {c.name: data[:, j] for j, c in enumerate(schema.columns)}
        return Batch(data.shape[0], columns=_typed_columns(sliced, schema))
    rows = _row_list(data, schema.width)
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in schema.columns]
    named: dict[str, Any] = {c.name: list(transposed[j]) for j, c in enumerate(schema.columns)}
    return Batch(len(rows), columns=_typed_columns(named, schema))


def _typed_columns(named: dict[str, Any], schema: signature.Schema) -> dict[str, npt.NDArray[Any]]:
    """Each signature column validated: float64 for numeric types, object for strings."""
    out: dict[str, npt.NDArray[Any]] = {}
    for column in schema.columns:
        values = named[column.name]
        if column.type in signature.NUMERIC:
            vector = _column_vector(values, column)
            if column.type in signature.INTEGER:
                bad = np.flatnonzero((vector != np.round(vector)) & np.isfinite(vector))
                if bad.size:
                    raise PayloadError(
                        f"column {column.name!r} expects {column.type}, got "
                        f"{float(vector[bad[0]])!r} in row {bad[0]}"
                    )
            if column.required and vector.size and np.isnan(vector).any():
                row = int(np.argmax(np.isnan(vector)))
                raise PayloadError(f"column {column.name!r}: null value in row {row}")
            out[column.name] = vector
            continue
        array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
        if array.dtype.kind not in "OU":
            bad_value = array.reshape(-1)[0] if array.size else None
            raise PayloadError(f"column {column.name!r} expects string, got {bad_value!r}")
        array = array.astype(object, copy=False).reshape(-1)
        for i, value in enumerate(array.tolist()):
            if value is None:
                if column.required:
                    raise PayloadError(f"column {column.name!r}: null value in row {i}")
            elif not isinstance(value, str):
                raise PayloadError(
                    f"column {column.name!r} expects string, got {value!r} in row {i}"
                )
        out[column.name] = array
    return out


def _positional(data: Any, schema: signature.Schema, numeric: bool) -> Batch:
    width = schema.width
    if numeric:
        matrix = _matrix(data, width, schema)
        return Batch(matrix.shape[0], matrix=_check_integers(matrix, schema))
    rows = _row_list(data, width)
    return Batch(len(rows), frame=_frame(pd.DataFrame(rows, columns=schema.names), schema))


def _unnamed(table: _Rows | _Columns, width: int, numeric: bool) -> Batch:
    if isinstance(table, _Columns):
        if numeric:
            raise PayloadError("this model has no column names; send rows, not named columns")
        frame = pd.DataFrame(table.data)
        return Batch(len(frame), frame=frame)
    if numeric:
        matrix = _matrix(table.data, width, None)
        return Batch(matrix.shape[0], matrix=matrix)
    frame = pd.DataFrame(table.data, columns=table.names)
    return Batch(len(frame), frame=frame)


def _matrix(data: Any, width: int, schema: signature.Schema | None) -> npt.NDArray[np.float64]:
    """Rows → float64 matrix; on anything odd, a slow scan finds the cell to blame."""
    try:
        array = np.asarray(data)
    except ValueError:
        array = None
    if array is not None and array.ndim == 2 and array.dtype.kind in "biuf":
        if width and array.shape[1] != width:
            raise PayloadError(f"expected {width} values per row, got {array.shape[1]}")
        return array.astype(np.float64, copy=False)
    if array is not None and array.ndim == 1 and array.size == 0:
        return np.empty((0, width))
    rows = _row_list(data, width)
    columns = schema.columns if schema else ()
    matrix = np.empty((len(rows), width or len(rows[0])), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            column = columns[j] if j < len(columns) else signature.Column(f"#{j}", "double")
            matrix[i, j] = _cell(value, column, i)
    return matrix


def _row_list(data: Any, width: int) -> list[list[Any]]:
    if isinstance(data, np.ndarray):
        data = data.tolist()
    if not isinstance(data, list):
        raise PayloadError("data must be a list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list):
            raise PayloadError(f"row {i} must be a list of values, got {type(row).__name__}")
        if width and len(row) != width:
            raise PayloadError(f"row {i} has {len(row)} values, expected {width}")
    if not width and data and len({len(r) for r in data}) > 1:
        raise PayloadError("rows have different lengths")
    return data


def _cell(value: Any, column: signature.Column, row: int) -> float:
    if value is None:
        if column.required:
            raise PayloadError(f"column {column.name!r}: null value in row {row}")
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        if isinstance(value, bool) and column.type == "boolean":
            return float(value)
        raise PayloadError(
            f"column {column.name!r} expects {column.type}, got {value!r} in row {row}"
        )
    return float(value)


def _column_vector(values: Any, column: signature.Column) -> npt.NDArray[np.float64]:
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if array.dtype.kind in "biuf" and array.ndim == 1:
        return array.astype(np.float64, copy=False)
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
        out[i] = _cell(value, column, i)
    return out


def _check_integers(
    matrix: npt.NDArray[np.float64], schema: signature.Schema
) -> npt.NDArray[np.float64]:
    integer = [i for i, c in enumerate(schema.columns) if c.type in signature.INTEGER]
    if integer and matrix.size:
        part = matrix[:, integer]
        bad = np.argwhere((part != np.round(part)) & np.isfinite(part))
        if bad.size:
            row, j = bad[0]
            column = schema.columns[integer[j]]
            raise PayloadError(
                f"column {column.name!r} expects {column.type}, got {float(part[row, j])!r} "
                f"in row {row}"
            )
    if np.isnan(matrix).any():
        required = [i for i, c in enumerate(schema.columns) if c.required]
        rows, cols = np.nonzero(np.isnan(matrix[:, required]))
        if rows.size:
            name = schema.columns[required[cols[0]]].name
            raise PayloadError(f"column {name!r}: null value in row {rows[0]}")
    return matrix


def _frame(frame: pd.DataFrame, schema: signature.Schema) -> pd.DataFrame:
    """Generic path: check what the signature declares, column by column."""
    for column in schema.columns:
        values = frame[column.name]
        if column.required and values.isna().any():
            row = int(np.argmax(values.isna().to_numpy()))
            raise PayloadError(f"column {column.name!r}: null value in row {row}")
        if column.type in signature.NUMERIC:
            present = values.dropna()
            if len(present) and not pd.api.types.is_numeric_dtype(present):
                bad = next(v for v in present if not isinstance(v, _NUMBER))
                raise PayloadError(f"column {column.name!r} expects {column.type}, got {bad!r}")
        elif column.type == "string":
            bad_rows = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
            if bad_rows:
                raise PayloadError(
                    f"column {column.name!r} expects string, got {values.iloc[bad_rows[0]]!r} "
                    f"in row {bad_rows[0]}"
                )
    return frame


def _required(schema: signature.Schema, name: str) -> bool:
    return next((c.required for c in schema.columns if c.name == name), True)


def _keys() -> str:
    return ", ".join(INVOCATION_KEYS)
