"""Feature bins from the training data: written by the trainer, read by the model server.

The trainer (``toque.trainer.run``) calls ``compute_bins`` on the training features and logs
the result as the run artifact ``toque/feature-bins.json`` through ``write_bins``; tests that
log models directly do the same. The server turns it into per-feature histograms
(``toque.serving.metrics``), so the drift monitor compares live traffic with the training
distribution bucket by bucket. Numeric features get up to ``QUANTILES - 1`` distinct inner
quantile edges; other features the list of their most frequent categories.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd

ARTIFACT_DIR = "toque"
ARTIFACT_FILE = "feature-bins.json"
ARTIFACT_PATH = f"{ARTIFACT_DIR}/{ARTIFACT_FILE}"
QUANTILES = 10
MAX_CATEGORIES = 50
FORMAT = 1


def compute_bins(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"format": 1, "features": {name: {"kind": "numeric", "edges": [...]}|...}}``."""
    features: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
            counts = column.dropna().astype(str).value_counts()
            features[str(name)] = {
                "kind": "categorical",
                "categories": [str(c) for c in counts.index[:MAX_CATEGORIES]],
            }
            continue
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        quantiles = np.quantile(values, np.linspace(0, 1, QUANTILES + 1)[1:-1])
        edges = np.unique(np.concatenate([[values.min()], quantiles, [values.max()]]))
        features[str(name)] = {"kind": "numeric", "edges": [float(e) for e in edges]}
    return {"format": FORMAT, "features": features}


def write_bins(frame: pd.DataFrame, directory: pathlib.Path) -> pathlib.Path:
    """Write ``feature-bins.json`` into ``directory``; log it under ``ARTIFACT_DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ARTIFACT_FILE
    path.write_text(json.dumps(compute_bins(frame), indent=1))
    return path


def log_bins(frame: pd.DataFrame, run_id: str, workdir: pathlib.Path) -> None:
    """Log the artifact to an MLflow run (for code that logs models itself)."""
    import mlflow

    path = write_bins(frame, workdir / "toque-bins")
    mlflow.MlflowClient().log_artifact(run_id, str(path), ARTIFACT_DIR)


def parse(text: str | bytes) -> dict[str, dict[str, Any]]:
    """The ``features`` map of a bins document; an unknown format yields no bins."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    features = document.get("features")
    return features if isinstance(features, dict) else {}
