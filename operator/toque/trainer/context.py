"""What the user's training function receives (``TrainContext``) and may return (``Result``).

User code::

    def train(ctx: TrainContext) -> Result:
        df = ctx.datasets["train"].frame()
        model = RandomForestClassifier(**ctx.params).fit(...)
        ctx.log_metrics({"train_accuracy": ..., "val_accuracy": ...})
        return Result(model=model, validation=val_df, label_column="target")
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A verified dataset version on local disk."""

    name: str
    ref: str  # as written in the spec
    pinned: str  # name@sha256:...
    path: pathlib.Path
    files: tuple[str, ...]

    def file(self, relative: str | None = None) -> pathlib.Path:
        """A file of the dataset; the only one when ``relative`` is omitted."""
        if relative is None:
            if len(self.files) != 1:
                raise ValueError(f"dataset {self.name} has {len(self.files)} files; name one")
            relative = self.files[0]
        return self.path / relative

    def frame(self, relative: str | None = None) -> pd.DataFrame:
        """The tabular file (CSV or Parquet) as a DataFrame."""
        target = self.file(relative if relative else self._tabular())
        if target.suffix == ".parquet":
            return pd.read_parquet(target)
        return pd.read_csv(target)

    def _tabular(self) -> str:
        tables = [f for f in self.files if f.endswith((".csv", ".parquet"))]
        if len(tables) != 1:
            raise ValueError(f"dataset {self.name} has {len(tables)} tables; name one")
        return tables[0]


@dataclasses.dataclass
class Result:
    """What a training function returns (a bare model is accepted too)."""

    model: Any
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    validation: pd.DataFrame | None = None
    label_column: str | None = None
    # Model inputs among the validation columns (default: all but the label).
    feature_columns: list[str] | None = None


@dataclasses.dataclass
class TrainContext:
    """Data, params and logging for one run; metrics are buffered and sent in batches."""

    params: dict[str, Any]
    datasets: dict[str, Dataset]
    workdir: pathlib.Path
    logger: logging.Logger
    _metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    _steps: list[tuple[str, float, int]] = dataclasses.field(default_factory=list)
    _params: dict[str, Any] = dataclasses.field(default_factory=dict)
    _artifacts: list[tuple[pathlib.Path, str | None]] = dataclasses.field(default_factory=list)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        if step is None:
            self._metrics[name] = float(value)
        else:
            self._steps.append((name, float(value), step))
            self._metrics[name] = float(value)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_param(self, name: str, value: Any) -> None:
        self._params[name] = value

    def log_artifact(self, path: pathlib.Path | str, artifact_path: str | None = None) -> None:
        self._artifacts.append((pathlib.Path(path), artifact_path))

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)
