"""Diff of two dataset versions: files, columns (added, removed, dtype/kind), row counts."""

from __future__ import annotations

from typing import Literal

from toque.data import diff, manifest


def col(name: str, dtype: str, kind: Literal["numeric", "categorical"]) -> manifest.Column:
    return manifest.Column(name=name, dtype=dtype, kind=kind)


def entry(path: str, fill: str, size: int = 10) -> manifest.FileEntry:
    return manifest.FileEntry(path=path, size=size, sha256=fill * 64)


def version(files: list[manifest.FileEntry], tables: list[manifest.Table]) -> manifest.Manifest:
    return manifest.build("ds", files, tables, creator="t")


BEFORE = version(
    [entry("train.csv", "a"), entry("notes.txt", "b"), entry("old.bin", "c")],
    [
        manifest.Table(
            path="train.csv",
            rows=100,
            columns=(
                col("age", "int64", "numeric"),
                col("zip", "int64", "numeric"),
                col("city", "object", "categorical"),
            ),
        )
    ],
)
AFTER = version(
    [entry("train.csv", "d", 12), entry("notes.txt", "b"), entry("new.bin", "e")],
    [
        manifest.Table(
            path="train.csv",
            rows=120,
            columns=(
                col("age", "float64", "numeric"),
                col("zip", "object", "categorical"),
                col("income", "float64", "numeric"),
            ),
        )
    ],
)


def test_files_added_removed_and_changed() -> None:
    result = diff.diff(BEFORE, AFTER)
    assert result.files_added == ("new.bin",)
    assert result.files_removed == ("old.bin",)
    assert result.files_changed == ("train.csv",)
    assert not result.identical


def test_column_changes_and_row_count() -> None:
    result = diff.diff(BEFORE, AFTER)
    changes = {(c.name, c.before is None, c.after is None) for c in result.columns}
    assert changes == {
        ("income", True, False),
        ("city", False, True),
        ("age", False, False),
        ("zip", False, False),
    }
    assert (result.rows_before, result.rows_after, result.rows_delta) == (100, 120, 20)
    lines = result.lines()
    assert "+ column train.csv:income (float64, numeric)" in lines
    assert "- column train.csv:city (object, categorical)" in lines
    assert "~ column train.csv:age int64/numeric -> float64/numeric" in lines
    assert "~ column train.csv:zip int64/numeric -> object/categorical" in lines
    assert "~ rows 100 -> 120 (+20)" in lines


def test_json_form_carries_the_same_facts() -> None:
    data = diff.diff(BEFORE, AFTER).to_dict()
    assert data["rows"] == {"before": 100, "after": 120, "delta": 20}
    assert data["files"]["added"] == ["new.bin"]
    zip_change = next(c for c in data["columns"] if c["name"] == "zip")
    assert zip_change["before"] == {"dtype": "int64", "kind": "numeric"}
    assert zip_change["after"] == {"dtype": "object", "kind": "categorical"}


def test_a_renamed_single_table_is_compared_column_by_column() -> None:
    table = BEFORE.tables[0]
    renamed = version(
        [entry("train-v2.csv", "a")],
        [manifest.Table(path="train-v2.csv", rows=100, columns=table.columns[:2])],
    )
    result = diff.diff(BEFORE, renamed)
    assert result.tables_added == () and result.tables_removed == ()
    assert [(c.table, c.name, c.after) for c in result.columns] == [
        ("train.csv->train-v2.csv", "city", None)
    ]


def test_identical_versions() -> None:
    result = diff.diff(BEFORE, BEFORE)
    assert result.identical
    assert result.columns == ()
    assert result.lines()[-1] == "identical content"
