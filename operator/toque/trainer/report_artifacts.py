"""The validation artifacts ``toque report`` draws its plots from.

Called by ``toque.trainer.run`` after the model is logged, with the validation rows the
training function returned: ``toque/validation-predictions.parquet`` (``label``,
``prediction`` and, for a classifier with ``predict_proba``, one ``proba_<class>`` column per
class; the task is in the file's metadata) and ``toque/feature-importance.json`` (from
``feature_importances_`` or ``|coef_|``, named by the model's input columns). Read back by
``toque.workflow.gather``. Like the feature bins, neither is worth failing a run for: each is
skipped with a warning when it cannot be built.
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from toque.core import redact

LOG = logging.getLogger("toque.train")

ARTIFACT_DIR = "toque"
PREDICTIONS_FILE = "validation-predictions.parquet"
IMPORTANCE_FILE = "feature-importance.json"
PREDICTIONS_PATH = f"{ARTIFACT_DIR}/{PREDICTIONS_FILE}"
IMPORTANCE_PATH = f"{ARTIFACT_DIR}/{IMPORTANCE_FILE}"

LABEL = "label"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
CLASSIFICATION = "classification"
REGRESSION = "regression"
# Parquet key-value metadata: the task, and the validation rows before sampling.
TASK_KEY = b"toque.task"
ROWS_KEY = b"toque.rows"
# Enough points for smooth curves and a stable confusion matrix; a bigger validation set is
# sampled (deterministically) so the artifact stays a few MB.
MAX_ROWS = 200_000


def predictions_frame(
    model: Any, features: pd.DataFrame, labels: pd.Series[Any]
) -> tuple[pd.DataFrame, str]:
    """Labels, predictions and class probabilities of the validation rows, and the task."""
    predictions = np.asarray(model.predict(features))
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.ndim != 1 or len(predictions) != len(features):
        raise ValueError(f"predict returned shape {predictions.shape} for {len(features)} rows")
    frame = pd.DataFrame({LABEL: labels.to_numpy(), PREDICTION: predictions})
    classes = getattr(model, "classes_", None)
    if classes is None:
        return frame, REGRESSION
    if hasattr(model, "predict_proba"):
        try:
            proba = np.asarray(model.predict_proba(features), dtype=float)
        except Exception as error:  # an estimator without probabilities still has a matrix
            LOG.warning("validation predictions without scores: %s", redact.redact(str(error)))
        else:
            for i, name in enumerate(classes):
                frame[f"{PROBA_PREFIX}{name}"] = proba[:, i]
    return frame, CLASSIFICATION


def predictions_parquet(frame: pd.DataFrame, task: str, total_rows: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), TASK_KEY: task.encode()}
    metadata[ROWS_KEY] = str(total_rows).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


def read_predictions(data: bytes) -> tuple[pd.DataFrame, str]:
    """The frame and task of a ``validation-predictions.parquet``."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    metadata = table.schema.metadata or {}
    frame = table.to_pandas()
    task = metadata.get(TASK_KEY, b"").decode() or (
        CLASSIFICATION
        if any(str(c).startswith(PROBA_PREFIX) for c in frame.columns)
        else REGRESSION
    )
    return frame, task


def _estimator(model: Any) -> Any:
    """The last step of a scikit-learn pipeline, else the model."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _input_names(model: Any, estimator: Any, columns: list[str], count: int) -> list[str]:
    """Names of the ``count`` inputs of the final estimator."""
    found = getattr(estimator, "feature_names_in_", None)
    if found is not None and len(found) == count:
        return [str(n) for n in found]
    if estimator is not model:  # a pipeline: ask the steps before the estimator
        try:
            names = model[:-1].get_feature_names_out()
            if len(names) == count:
                return [str(n) for n in names]
        except Exception:  # a step without get_feature_names_out: fall through
            LOG.debug("no feature names from the pipeline's steps")
    if len(columns) == count:
        return list(columns)
    return [f"x{i}" for i in range(count)]


def feature_importance(model: Any, columns: list[str]) -> dict[str, Any] | None:
    """``{"source", "features": [{"name", "importance"}]}``, most important first; None when
    the model has neither ``feature_importances_`` nor ``coef_``."""
    estimator = _estimator(model)
    values = getattr(estimator, "feature_importances_", None)
    source = "feature_importances_"
    if values is None:
        coef = getattr(estimator, "coef_", None)
        if coef is None:
            return None
        values = np.abs(np.asarray(coef, dtype=float))
        if values.ndim == 2:  # one row per class: the mean weight across them
            values = values.mean(axis=0)
        source = "|coef_|"
    values = np.asarray(values, dtype=float).ravel()
    names = _input_names(model, estimator, columns, len(values))
    ranked = sorted(zip(names, values.tolist(), strict=True), key=lambda p: -abs(p[1]))
    return {"source": source, "features": [{"name": n, "importance": v} for n, v in ranked]}


def write(
    model: Any, features: pd.DataFrame, labels: pd.Series[Any] | None, directory: pathlib.Path
) -> list[pathlib.Path]:
    """Both artifacts under ``directory``, each only when it can be built."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    if labels is not None:
        try:
            total = len(features)
            if total > MAX_ROWS:
                features = features.sample(n=MAX_ROWS, random_state=0)
                labels = labels.loc[features.index]
            frame, task = predictions_frame(model, features, labels)
            path = directory / PREDICTIONS_FILE
            path.write_bytes(predictions_parquet(frame, task, total))
            written.append(path)
        except Exception as error:
            LOG.warning("no validation predictions: %s", redact.redact(str(error)))
    try:
        importance = feature_importance(model, [str(c) for c in features.columns])
        if importance is not None:
            path = directory / IMPORTANCE_FILE
            path.write_text(json.dumps(importance, indent=1) + "\n")
            written.append(path)
    except Exception as error:
        LOG.warning("no feature importance: %s", redact.redact(str(error)))
    return written
