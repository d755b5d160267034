"""Feature bins for code that logs models itself (tests, benchmarks, notebooks).

The artifact's format, its computation and its parser live in ``toque.core.bins``, shared
with the trainer; ``log_bins`` logs the file to an MLflow run the way the trainer does.
"""

from __future__ import annotations

import pathlib
from typing import Any

from toque.core.bins import ARTIFACT_DIR, write_bins


def log_bins(frame: Any, run_id: str, workdir: pathlib.Path) -> None:
    """Log ``toque/feature-bins.json`` of ``frame`` (a DataFrame) to an MLflow run."""
    import mlflow

    path = write_bins(frame, workdir / "toque-bins")
    mlflow.MlflowClient().log_artifact(run_id, str(path), ARTIFACT_DIR)
