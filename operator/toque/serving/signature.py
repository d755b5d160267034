"""The input schema a model server validates against, read from the MLmodel file.

MLflow stores the signature as JSON strings inside ``MLmodel``; reading them here avoids
loading the model through mlflow just to learn its columns. Called by
``toque.serving.model`` at startup; ``toque.serving.payload`` validates requests with it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import yaml

INTEGER = frozenset({"long", "integer"})
FLOAT = frozenset({"double", "float"})
NUMERIC = INTEGER | FLOAT | {"boolean"}
OIP_TYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
}
# What MLflow's schema enforcement makes of each column type (``DataType.to_numpy``): the
# dtypes a pyfunc model of a signature sees, and so what the fast paths feed.
NUMPY_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
}


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # MLflow's: double, float, long, integer, boolean, string, binary, datetime
    required: bool = True


@dataclasses.dataclass(frozen=True)
class Schema:
    """Named columns (in the model's order), or a bare width for a tensor/unnamed model."""

    columns: tuple[Column, ...]
    width: int
    dtype: str | None = None  # a tensor signature's numpy dtype ("float32", ...)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def named(self) -> bool:
        return bool(self.columns)

    @property
    def numeric(self) -> bool:
        return all(c.type in NUMERIC for c in self.columns)

    @property
    def tabular(self) -> bool:
        """Named numeric and string columns only: what the column path takes."""
        return self.named and all(c.type in NUMERIC or c.type == "string" for c in self.columns)

    def index(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.columns)}


def from_names(names: list[str]) -> Schema:
    return Schema(tuple(Column(n, "double") for n in names), len(names))


def read_mlmodel(model_dir: pathlib.Path) -> dict[str, Any]:
    loaded = yaml.safe_load((model_dir / "MLmodel").read_text())
    return loaded if isinstance(loaded, dict) else {}


def from_mlmodel(mlmodel: dict[str, Any]) -> Schema | None:
    """The input schema, or ``None`` when the model was logged without a signature."""
    raw = (mlmodel.get("signature") or {}).get("inputs")
    if not raw:
        return None
    specs = json.loads(raw) if isinstance(raw, str) else raw
    if len(specs) == 1 and specs[0].get("type") == "tensor":
        spec = specs[0].get("tensor-spec", {})
        shape = spec.get("shape", [])
        width = int(shape[-1]) if len(shape) == 2 and int(shape[-1]) > 0 else 0
        dtype = spec.get("dtype")
        return Schema((), width, str(dtype) if dtype else None)
    columns = tuple(
        Column(str(s.get("name", i)), str(s.get("type", "double")), bool(s.get("required", True)))
        for i, s in enumerate(specs)
    )
    return Schema(columns, len(columns))
