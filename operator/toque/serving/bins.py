"""Feature bins for code that logs models itself (tests, benchmarks, notebooks).

The artifact's format and its parser live in ``toque.core.bins``; ``log_bins`` logs the
file to an MLflow run the way the trainer does: the drift profile of ``frame``
(``toque.drift.profile``), a superset of the bins document that the drift monitor can
compare live traffic with.
"""

from __future__ import annotations

import pathlib
from typing import Any

from toque.core import bins


def log_bins(
    frame: Any, run_id: str, workdir: pathlib.Path, model: Any = None, labels: Any = None
) -> None:
    """Log ``toque/feature-bins.json`` of ``frame`` (a DataFrame) to an MLflow run.

    With ``model`` the profile holds its predictions on ``frame`` too, and with ``labels``
    (a classifier's true classes) its accuracy per confidence bucket.
    """
    import mlflow

    from toque.drift import profile

    predictions = proba = classes = None
    if model is not None:
        predictions = model.predict(frame)
        if labels is not None and hasattr(model, "predict_proba"):
            proba, classes = model.predict_proba(frame), list(model.classes_)
    built = profile.build_profile(
        frame,
        predictions=predictions,
        labels=labels if proba is not None else None,
        proba=proba,
        classes=classes,
        source=f"run:{run_id}",
    )
    directory = workdir / "toque-bins"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / bins.ARTIFACT_FILE
    path.write_bytes(profile.to_json(built))
    mlflow.MlflowClient().log_artifact(run_id, str(path), bins.ARTIFACT_DIR)
