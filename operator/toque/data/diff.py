"""What changed between two dataset versions: files, tables, columns and row counts.

Pure: works on two ``manifest.Manifest`` values. Called by ``toque data diff`` and by
``toque report`` to explain a metrics change by a data change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from toque.data import manifest


@dataclasses.dataclass(frozen=True)
class ColumnChange:
    table: str
    name: str
    before: manifest.Column | None
    after: manifest.Column | None

    def describe(self) -> str:
        if self.before is None and self.after is not None:
            return f"+ column {self.table}:{self.name} ({self.after.dtype}, {self.after.kind})"
        if self.after is None and self.before is not None:
            return f"- column {self.table}:{self.name} ({self.before.dtype}, {self.before.kind})"
        assert self.before is not None and self.after is not None
        return (
            f"~ column {self.table}:{self.name} {self.before.dtype}/{self.before.kind}"
            f" -> {self.after.dtype}/{self.after.kind}"
        )


@dataclasses.dataclass(frozen=True)
class Diff:
    before: str
    after: str
    files_added: tuple[str, ...]
    files_removed: tuple[str, ...]
    files_changed: tuple[str, ...]
    tables_added: tuple[str, ...]
    tables_removed: tuple[str, ...]
    columns: tuple[ColumnChange, ...]
    rows_before: int | None
    rows_after: int | None

    @property
    def identical(self) -> bool:
        return self.before == self.after or not (
            self.files_added or self.files_removed or self.files_changed
        )

    @property
    def rows_delta(self) -> int | None:
        if self.rows_before is None or self.rows_after is None:
            return None
        return self.rows_after - self.rows_before

    def to_dict(self) -> dict[str, Any]:
        def column(c: manifest.Column | None) -> dict[str, str] | None:
            return None if c is None else {"dtype": c.dtype, "kind": c.kind}

        return {
            "before": self.before,
            "after": self.after,
            "identical": self.identical,
            "files": {
                "added": list(self.files_added),
                "removed": list(self.files_removed),
                "changed": list(self.files_changed),
            },
            "tables": {"added": list(self.tables_added), "removed": list(self.tables_removed)},
            "columns": [
                {
                    "table": c.table,
                    "name": c.name,
                    "before": column(c.before),
                    "after": column(c.after),
                }
                for c in self.columns
            ],
            "rows": {
                "before": self.rows_before,
                "after": self.rows_after,
                "delta": self.rows_delta,
            },
        }

    def lines(self) -> list[str]:
        out = [f"--- {self.before}", f"+++ {self.after}"]
        if self.identical:
            return [*out, "identical content"]
        out += [f"+ file {p}" for p in self.files_added]
        out += [f"- file {p}" for p in self.files_removed]
        out += [f"~ file {p}" for p in self.files_changed]
        out += [f"+ table {p}" for p in self.tables_added]
        out += [f"- table {p}" for p in self.tables_removed]
        out += [c.describe() for c in self.columns]
        if self.rows_before != self.rows_after:
            delta = f" ({self.rows_delta:+d})" if self.rows_delta is not None else ""
            out.append(f"~ rows {self.rows_before} -> {self.rows_after}{delta}")
        return out


def _pair_tables(
    a: dict[str, manifest.Table], b: dict[str, manifest.Table]
) -> list[tuple[manifest.Table, manifest.Table]]:
    pairs = [(a[p], b[p]) for p in sorted(a.keys() & b.keys())]
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    # One table renamed (train.csv -> train-v2.csv) is still the same table to a reader.
    if len(only_a) == 1 and len(only_b) == 1:
        pairs.append((a[only_a[0]], b[only_b[0]]))
    return pairs


def _columns(old: manifest.Table, new: manifest.Table) -> list[ColumnChange]:
    label = new.path if old.path == new.path else f"{old.path}->{new.path}"
    before = {c.name: c for c in old.columns}
    after = {c.name: c for c in new.columns}
    changes = [ColumnChange(label, n, None, after[n]) for n in after if n not in before]
    changes += [ColumnChange(label, n, before[n], None) for n in before if n not in after]
    changes += [
        ColumnChange(label, n, before[n], after[n])
        for n in before
        if n in after and before[n] != after[n]
    ]
    return changes


def diff(a: manifest.Manifest, b: manifest.Manifest) -> Diff:
    files_a = {f.path: f for f in a.files}
    files_b = {f.path: f for f in b.files}
    tables_a = {t.path: t for t in a.tables}
    tables_b = {t.path: t for t in b.tables}
    pairs = _pair_tables(tables_a, tables_b)
    paired_a = {old.path for old, _ in pairs}
    paired_b = {new.path for _, new in pairs}
    return Diff(
        before=a.ref,
        after=b.ref,
        files_added=tuple(sorted(files_b.keys() - files_a.keys())),
        files_removed=tuple(sorted(files_a.keys() - files_b.keys())),
        files_changed=tuple(
            sorted(
                p
                for p in files_a.keys() & files_b.keys()
                if files_a[p].content != files_b[p].content
            )
        ),
        tables_added=tuple(sorted(tables_b.keys() - paired_b)),
        tables_removed=tuple(sorted(tables_a.keys() - paired_a)),
        columns=tuple(change for old, new in pairs for change in _columns(old, new)),
        rows_before=a.rows,
        rows_after=b.rows,
    )
