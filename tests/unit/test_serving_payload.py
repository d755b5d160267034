"""Request bodies → matrices/frames, and the 4xx messages that name what is wrong."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from toque.serving import payload, signature

SCHEMA = signature.Schema(
    (
        signature.Column("a", "double"),
        signature.Column("b", "long"),
        signature.Column("c", "double"),
    ),
    3,
)
ROWS = [[1.5, 2, 3.0], [4.0, 5, 6.5]]
EXPECTED = np.asarray(ROWS, dtype=np.float64)


def _inv(document: Any, numeric: bool = True) -> payload.Batch:
    return payload.parse_invocations(json.dumps(document).encode(), SCHEMA, numeric)


def _infer(document: Any) -> payload.Batch:
    return payload.parse_infer(json.dumps(document).encode(), SCHEMA, True)


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": ROWS}},
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3.0, 1.5, 2], [6.5, 4.0, 5]]}},
        {"dataframe_split": {"columns": ["a", "b", "c", "extra"], "data": [[*r, 9] for r in ROWS]}},
        {"dataframe_records": [{"a": 1.5, "b": 2, "c": 3.0}, {"c": 6.5, "b": 5, "a": 4.0}]},
        {"instances": ROWS},
        {"instances": [{"a": 1.5, "b": 2, "c": 3.0}, {"a": 4.0, "b": 5, "c": 6.5}]},
        {"inputs": {"a": [1.5, 4.0], "b": [2, 5], "c": [3.0, 6.5]}},
        {"inputs": ROWS},
    ],
    ids=[
        "split",
        "split-reordered",
        "split-extra",
        "records",
        "instances",
        "instances-records",
        "inputs-columns",
        "inputs-rows",
    ],
)
def test_invocation_formats(document: Any) -> None:
    batch = _inv(document)
    assert batch.rows == 2
    assert batch.matrix is not None
    assert np.array_equal(batch.matrix, EXPECTED)
    frame = _inv(document, numeric=False).frame
    assert frame is not None
    assert list(frame.columns) == ["a", "b", "c"]
    assert np.array_equal(frame.to_numpy(dtype=float), EXPECTED)


def test_oip_tensor_forms() -> None:
    flat = {
        "name": "x",
        "shape": [2, 3],
        "datatype": "FP64",
        "data": [v for row in ROWS for v in row],
    }
    assert np.array_equal(_infer({"inputs": [flat]}).matrix, EXPECTED)  # type: ignore[arg-type]
    nested = {**flat, "data": ROWS}
    assert np.array_equal(_infer({"inputs": [nested]}).matrix, EXPECTED)  # type: ignore[arg-type]
    columns = [
        {"name": n, "shape": [2], "datatype": "FP64", "data": [r[i] for r in ROWS]}
        for i, n in enumerate(["c", "a", "b"][::-1][::-1])
        for i in [["a", "b", "c"].index(n)]
    ]
    batch = _infer({"inputs": columns, "outputs": [{"name": "predict_proba"}]})
    assert np.array_equal(batch.matrix, EXPECTED)  # type: ignore[arg-type]
    assert batch.outputs == ("predict_proba",)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "missing column(s): c"),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2]]}},
            "expected 3 values per row, got 2",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, "x", 3]]}},
            "column 'b' expects long, got 'x' in row 0",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [1, 2.5, 3]]}},
            "column 'b' expects long, got 2.5 in row 1",
        ),
        (
            {"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2}]},
            "column 'c': null value in row 1",
        ),
        ({"instances": [[1, 2, None]]}, "column 'c': null value in row 0"),
        ({"instances": [[1, 2, 3, 4]]}, "expected 3 values per row, got 4"),
        ({"inputs": {"a": [1], "b": [2, 3], "c": [4]}}, "different lengths"),
        ({"dataframe_split": {}, "instances": []}, "exactly one of"),
        ([1, 2], "JSON object"),
    ],
)
def test_invocation_errors_name_the_problem(document: Any, message: str) -> None:
    with pytest.raises(payload.PayloadError) as caught:
        _inv(document)
    assert message in str(caught.value)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3]}, "needs 6 values"),
        (
            {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]},
            "expected 3 values per row, got 4",
        ),
        ({"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}, "2-D tensor"),
        (
            {"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]},
            "not numeric",
        ),
        ({"name": "x", "shape": [1, 3]}, "name, shape, datatype and data"),
    ],
)
def test_infer_errors_name_the_shape(tensor: dict[str, Any], message: str) -> None:
    with pytest.raises(payload.PayloadError) as caught:
        _infer({"inputs": [tensor]})
    assert message in str(caught.value)


def test_bad_json_and_empty_body() -> None:
    for body in (b"", b"{nope"):
        with pytest.raises(payload.PayloadError):
            payload.parse_invocations(body, SCHEMA, True)


MIXED = signature.Schema(
    (
        signature.Column("size", "string"),
        signature.Column("n", "long"),
        signature.Column("note", "string", required=False),
    ),
    3,
)


@pytest.mark.parametrize(
    "document",
    [
        {
            "dataframe_split": {
                "columns": ["size", "n", "note"],
                "data": [["s", 1, None], ["l", 2, "x"]],
            }
        },
        {"dataframe_split": {"columns": ["n", "size"], "data": [[1, "s"], [2, "l"]]}},
        {"dataframe_records": [{"size": "s", "n": 1}, {"size": "l", "n": 2, "note": "x"}]},
    ],
    ids=["split", "split-reordered-optional-missing", "records"],
)
def test_column_input_gives_one_typed_vector_per_signature_column(document: Any) -> None:
    batch = payload.parse_invocations(json.dumps(document).encode(), MIXED, False, True)
    assert batch.rows == 2 and batch.columns is not None and batch.frame is None
    assert list(batch.columns) == ["size", "n", "note"]
    assert batch.columns["size"].tolist() == ["s", "l"]
    assert batch.columns["n"].dtype == np.float64 and batch.columns["n"].tolist() == [1.0, 2.0]
    assert batch.columns["note"].dtype == object


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["s", "one", None]], "column 'n' expects long, got 'one' in row 0"),
        ([["s", 1.5, None]], "column 'n' expects long, got 1.5 in row 0"),
        ([[3, 1, None]], "column 'size' expects string, got 3 in row 0"),
        ([[None, 1, None]], "column 'size': null value in row 0"),
        ([["s", None, None]], "column 'n': null value in row 0"),
    ],
    ids=["text-in-long", "fraction-in-long", "number-in-string", "null-string", "null-long"],
)
def test_column_input_errors_name_the_column_and_row(rows: list[Any], message: str) -> None:
    document = {"dataframe_split": {"columns": ["size", "n", "note"], "data": rows}}
    with pytest.raises(payload.PayloadError) as caught:
        payload.parse_invocations(json.dumps(document).encode(), MIXED, False, True)
    assert message in str(caught.value)
