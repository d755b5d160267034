"""Fetch a model version, prove it is the recorded one, and make a predictor of it.

``fetch`` downloads the model from MLflow (artifacts in MinIO/S3), computes
``toque.trainer.digest.model_digest`` over the download and compares it with the digest the
registry records; ``load`` picks the compiled forest (``toque.serving.forest``) for
scikit-learn tree ensembles and ``mlflow.pyfunc`` for everything else. Called once at
startup by ``toque.serving.server`` (fetch) and in each worker (load).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.serving import bins, forest, signature
from toque.trainer import digest, retry

LOG = logging.getLogger("toque.serve")


class ModelRejectedError(Exception):
    """Permanent: digest mismatch, model not found, unusable model."""


@dataclasses.dataclass(frozen=True)
class Fetched:
    path: pathlib.Path
    digest: str
    run_id: str | None
    bins: dict[str, dict[str, Any]]  # feature → bin spec; empty when the run has none


@dataclasses.dataclass
class Prediction:
    values: npt.NDArray[Any]  # one prediction per row (labels or numbers)
    class_index: npt.NDArray[np.intp] | None = None  # compiled classifiers only
    proba: npt.NDArray[np.float64] | None = None


class Predictor:
    """The model behind the endpoints: ``numeric`` models take a matrix, others a frame."""

    def __init__(
        self, schema: signature.Schema | None, compiled: forest.Forest | None, pyfunc: Any
    ) -> None:
        self.schema = schema
        self.compiled = compiled
        self.pyfunc = pyfunc

    @property
    def numeric(self) -> bool:
        return self.compiled is not None

    def predict(self, inputs: Any, want_proba: bool = False) -> Prediction:
        if self.compiled is not None:
            values, outputs = self.compiled.predict(inputs)
            if self.compiled.is_classifier:
                index = np.argmax(outputs, axis=1)
                return Prediction(values, index, outputs if want_proba else None)
            return Prediction(values)
        result = self.pyfunc.predict(inputs)
        if hasattr(result, "to_numpy"):
            result = result.to_numpy()
        values = np.asarray(result)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        return Prediction(values)


def is_transient(error: BaseException) -> bool:
    from toque.trainer import run

    return run.is_transient(error)


def fetch(model_uri: str, expected_digest: str | None, budget_s: float) -> Fetched:
    """Download and verify; ``ModelRejectedError`` or ``retry.DependencyDownError`` on failure."""
    import mlflow

    target = pathlib.Path(tempfile.mkdtemp(prefix="toque-serve-"))

    def download() -> str:
        return str(
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target))
        )

    try:
        local = pathlib.Path(
            retry.with_backoff(download, f"download {model_uri}", is_transient, budget_s, LOG)
        )
    except retry.DependencyDownError:
        raise
    except Exception as error:
        raise ModelRejectedError(f"cannot download {model_uri}: {error}") from error
    if not (local / "MLmodel").is_file():
        raise ModelRejectedError(f"{model_uri} is not an MLflow model (no MLmodel file)")
    actual = digest.model_digest(local)
    if expected_digest and actual != expected_digest:
        raise ModelRejectedError(
            f"digest mismatch for {model_uri}: the registry records {expected_digest}, "
            f"the downloaded artifact is {actual}; refusing to serve it"
        )
    mlmodel = signature.read_mlmodel(local)
    run_id = mlmodel.get("run_id")
    feature_bins: dict[str, dict[str, Any]] = {}
    if run_id:
        feature_bins = _fetch_bins(str(run_id), target, budget_s)
    else:
        LOG.info("model has no run id; no per-feature histograms")
    return Fetched(local, actual, str(run_id) if run_id else None, feature_bins)


def _fetch_bins(run_id: str, target: pathlib.Path, budget_s: float) -> dict[str, dict[str, Any]]:
    import mlflow

    def download() -> str:
        return str(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=bins.ARTIFACT_PATH, dst_path=str(target / "bins")
            )
        )

    try:
        path = retry.with_backoff(download, "download feature bins", is_transient, budget_s, LOG)
        parsed = bins.parse(pathlib.Path(path).read_text())
    except retry.DependencyDownError:
        raise
    except Exception as error:
        LOG.info(
            "run %s has no usable %s (%s); no per-feature histograms",
            run_id,
            bins.ARTIFACT_PATH,
            str(error).splitlines()[0][:200],
        )
        return {}
    LOG.info("feature bins for %d features from run %s", len(parsed), run_id)
    return parsed


def load(path: pathlib.Path) -> Predictor:
    """The predictor of a verified local model directory."""
    # The digest check has just proven these bytes are the ones training produced, which is
    # what MLflow's deserialization guard asks the operator to vouch for.
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlmodel = signature.read_mlmodel(path)
    schema = signature.from_mlmodel(mlmodel)
    flavors = mlmodel.get("flavors") or {}
    if "sklearn" in flavors:
        import mlflow.sklearn

        compiled = forest.compile_model(mlflow.sklearn.load_model(str(path)))
        if compiled is not None:
            if schema is None or (schema.named and schema.width != compiled.n_features):
                schema = (
                    signature.from_names(compiled.feature_names)
                    if compiled.feature_names
                    else signature.Schema((), compiled.n_features)
                )
            if schema.numeric:
                LOG.info("serving a compiled %d-tree ensemble", compiled.roots.size)
                return Predictor(schema, compiled, None)
    import mlflow.pyfunc

    LOG.info("serving through mlflow.pyfunc (%s)", ", ".join(flavors) or "no flavors")
    return Predictor(schema, None, mlflow.pyfunc.load_model(str(path)))
