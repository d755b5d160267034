"""Tabular schema inference: numeric vs categorical columns, row counts, unreadable files."""

from __future__ import annotations

import logging
import pathlib

import pandas
import pytest

from toque.data import manifest, schema

FRAME = pandas.DataFrame(
    {
        "age": [31, 45, 27],
        "income": [1.5, 2.25, None],
        "city": ["Oslo", "Lima", "Oslo"],
        "member": [True, False, True],
    }
)


def kinds(table: manifest.Table | None) -> dict[str, tuple[str, str]]:
    assert table is not None
    return {c.name: (c.dtype, c.kind) for c in table.columns}


def test_csv_columns_and_rows(tmp_path: pathlib.Path) -> None:
    FRAME.to_csv(tmp_path / "t.csv", index=False)
    table = schema.infer(tmp_path / "t.csv", "data/t.csv")
    assert table is not None
    assert table.path == "data/t.csv"
    assert table.rows == 3
    assert [c.name for c in table.columns] == ["age", "income", "city", "member"]
    found = kinds(table)
    assert found["age"] == ("int64", "numeric")
    assert found["income"] == ("float64", "numeric")
    assert found["city"][1] == "categorical"
    assert found["member"] == ("bool", "categorical")


def test_parquet_schema_matches_the_csv_reading(tmp_path: pathlib.Path) -> None:
    FRAME.to_parquet(tmp_path / "t.parquet", index=False)
    FRAME.to_csv(tmp_path / "t.csv", index=False)
    parquet = schema.infer(tmp_path / "t.parquet", "t.parquet")
    assert parquet is not None and parquet.rows == 3
    assert {n: k for n, (_, k) in kinds(parquet).items()} == {
        n: k for n, (_, k) in kinds(schema.infer(tmp_path / "t.csv", "t.csv")).items()
    }


def test_a_column_with_one_text_value_is_categorical(tmp_path: pathlib.Path) -> None:
    (tmp_path / "t.csv").write_text("code\n1\n2\nn/a-x\n")
    assert kinds(schema.infer(tmp_path / "t.csv", "t.csv"))["code"][1] == "categorical"


def test_unreadable_table_gives_no_schema_and_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with caplog.at_level(logging.WARNING):
        assert schema.infer(tmp_path / "broken.parquet", "broken.parquet") is None
    assert "broken.parquet" in caplog.text


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a.csv", True), ("d/A.CSV", True), ("x.parquet", True), ("x.pq", True), ("x.json", False)],
)
def test_is_tabular(path: str, expected: bool) -> None:
    assert schema.is_tabular(path) is expected
