"""Fetch a model version, prove it is the recorded one, and make a predictor of it.

``fetch`` downloads the model from MLflow (artifacts in MinIO/S3), computes
``toque.core.digest.model_digest`` over the download and compares it with the digest the
registry records; ``load`` picks the compiled forest (``toque.serving.forest``) for
scikit-learn tree ensembles and ``mlflow.pyfunc`` for everything else. Called once at
startup by ``toque.serving.server``.

Class probabilities (the ``predict_proba`` output and the confidence histogram) come from
the compiled forest for free, and for a pyfunc model of the ``sklearn`` flavour whose
estimator has ``predict_proba`` (``PyFuncModel.get_raw_model()``) from a second call: the
labels still come from pyfunc's ``predict``, since ``classes_[argmax(proba)]`` is not what
every estimator predicts (``SVC(probability=True)``, thresholded models).

Loading a model can run code from it (pickle, cloudpickle; skops within its trusted
types). So: a model without an expected digest is refused unless the server was started
with ``--allow-unverified``; MLflow's ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` stays
``false`` (``deny_deserialization``, at startup) until the digest has matched; and a
skops file is loaded only when every type it holds is on ``toque.core.trusted_types``'s
allow-list, whatever the model's own ``MLmodel`` claims to trust.
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

from toque.core import bins, digest, redact, retry, trusted_types
from toque.serving import forest, signature

LOG = logging.getLogger("toque.serve")
PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


class ModelRejectedError(Exception):
    """Permanent: no or mismatching digest, model not found, foreign types, unusable model."""

    transient = False


@dataclasses.dataclass(frozen=True)
class Fetched:
    path: pathlib.Path
    digest: str
    run_id: str | None
    bins: dict[str, dict[str, Any]]  # feature → bin spec; empty when the run has none
    # The digest matched the expected one; False only under --allow-unverified.
    verified: bool = False
    # Loading may deserialize: verified, or the operator explicitly opted out.
    trusted: bool = False


@dataclasses.dataclass
class Prediction:
    values: npt.NDArray[Any]  # one prediction per row (labels or numbers)
    class_index: npt.NDArray[np.intp] | None = None  # compiled classifiers only
    proba: npt.NDArray[np.float64] | None = None  # (rows, classes), columns as ``classes``


class Predictor:
    """The model behind the endpoints: ``numeric`` models take a matrix, others a frame.

    ``estimator``: the scikit-learn classifier under a pyfunc model, asked for
    ``predict_proba`` (None: the model offers no probabilities).
    """

    def __init__(
        self,
        schema: signature.Schema | None,
        compiled: forest.Forest | None,
        pyfunc: Any,
        estimator: Any = None,
    ) -> None:
        self.schema = schema
        self.compiled = compiled
        self.pyfunc = pyfunc
        self.estimator = estimator
        self._proba_failed = False

    @property
    def numeric(self) -> bool:
        return self.compiled is not None

    @property
    def classes(self) -> npt.NDArray[Any] | None:
        """The classes in ``proba`` column order; None for regressors and opaque models."""
        if self.compiled is not None:
            return self.compiled.classes
        if self.estimator is not None:
            return np.asarray(self.estimator.classes_)
        return None

    def work(self, rows: int) -> int:
        """Node visits a compiled prediction of ``rows`` rows makes (its cost, roughly)."""
        if self.compiled is None:
            return 0
        return rows * int(self.compiled.roots.size) * max(1, self.compiled.depth)

    def predict(
        self, inputs: Any, want_proba: bool = False, confidence: bool = False
    ) -> Prediction:
        """Predict; ``proba`` when the client (``want_proba``) or the metrics (``confidence``)
        want it, and always for the compiled forest, where it costs nothing extra.

        A pyfunc estimator's ``predict_proba`` that fails while only the metrics wanted it
        is logged once and skipped, so serving does not depend on it; asked for, it raises.
        """
        if self.compiled is not None:
            values, outputs = self.compiled.predict(inputs)
            if self.compiled.is_classifier:
                return Prediction(values, np.argmax(outputs, axis=1), outputs)
            return Prediction(values)
        result = self.pyfunc.predict(inputs)
        if hasattr(result, "to_numpy"):
            result = result.to_numpy()
        values = np.asarray(result)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if self.estimator is None or not (want_proba or confidence):
            return Prediction(values)
        try:
            proba = np.asarray(self.estimator.predict_proba(inputs), dtype=np.float64)
            if proba.shape != (len(values), len(self.estimator.classes_)):
                raise ValueError(f"predict_proba returned shape {proba.shape}")
        except Exception as error:
            if want_proba:
                raise
            if not self._proba_failed:
                LOG.warning(
                    "predict_proba failed; serving without class probabilities: %s",
                    redact.redact(f"{type(error).__name__}: {error}"),
                )
            self._proba_failed = True
            return Prediction(values)
        return Prediction(values, proba=proba)


def deny_deserialization() -> None:
    """MLflow allows unpickling by default; forbid it until a model has been verified."""
    os.environ[PICKLE_ENV] = "false"


def fetch(
    model_uri: str,
    expected_digest: str | None,
    budget_s: float,
    allow_unverified: bool = False,
) -> Fetched:
    """Download and verify; ``ModelRejectedError`` or ``retry.DependencyDownError`` on failure.

    Without ``expected_digest`` the model is refused before anything is downloaded, unless
    ``allow_unverified`` (``--allow-unverified``) says to serve it as it comes.
    """
    if not expected_digest and not allow_unverified:
        raise ModelRejectedError(
            f"no expected digest for {model_uri}: refusing to load a model that cannot be "
            "verified (pass --expected-digest, or --allow-unverified to serve it anyway)"
        )
    import mlflow

    target = pathlib.Path(tempfile.mkdtemp(prefix="toque-serve-"))

    def download() -> str:
        return str(
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target))
        )

    try:
        local = pathlib.Path(retry.with_backoff(download, f"download {model_uri}", budget_s, LOG))
    except retry.DependencyDownError:
        raise
    except Exception as error:
        raise ModelRejectedError(redact.redact(f"cannot download {model_uri}: {error}")) from error
    if not (local / "MLmodel").is_file():
        raise ModelRejectedError(f"{model_uri} is not an MLflow model (no MLmodel file)")
    actual = digest.model_digest(local)
    if expected_digest and actual != expected_digest:
        raise ModelRejectedError(
            f"digest mismatch for {model_uri}: the registry records {expected_digest}, "
            f"the downloaded artifact is {actual}; refusing to serve it"
        )
    verified = bool(expected_digest)
    if not verified:
        LOG.warning("--allow-unverified: serving %s (%s) without verifying it", model_uri, actual)
    mlmodel = signature.read_mlmodel(local)
    run_id = mlmodel.get("run_id")
    feature_bins: dict[str, dict[str, Any]] = {}
    if run_id:
        feature_bins = _fetch_bins(str(run_id), target, budget_s)
    else:
        LOG.info("model has no run id; no per-feature histograms")
    return Fetched(
        local, actual, str(run_id) if run_id else None, feature_bins, verified, trusted=True
    )


def _fetch_bins(run_id: str, target: pathlib.Path, budget_s: float) -> dict[str, dict[str, Any]]:
    import mlflow

    def download() -> str:
        return str(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=bins.ARTIFACT_PATH, dst_path=str(target / "bins")
            )
        )

    try:
        path = retry.with_backoff(download, "download feature bins", budget_s, LOG)
        parsed = bins.parse(pathlib.Path(path).read_text())
    except retry.DependencyDownError:
        raise
    except Exception as error:
        LOG.info(
            "run %s has no usable %s (%s); no per-feature histograms",
            run_id,
            bins.ARTIFACT_PATH,
            redact.redact(str(error)).splitlines()[0][:200],
        )
        return {}
    LOG.info("feature bins for %d features from run %s", len(parsed), run_id)
    return parsed


def check_skops_types(path: pathlib.Path, flavor: dict[str, Any]) -> None:
    """Refuse a skops-saved scikit-learn model holding a type off the allow-list."""
    if flavor.get("serialization_format") != "skops":
        return
    import skops.io

    file = path / str(flavor.get("pickled_model") or "model.skops")
    try:
        found = skops.io.get_untrusted_types(file=file)
    except Exception as error:
        raise ModelRejectedError(
            f"cannot read the skops file {file.name}: {type(error).__name__}: {error}"
        ) from error
    foreign = trusted_types.foreign(found)
    if foreign:
        raise ModelRejectedError(
            f"the model's {file.name} holds type(s) outside the skops allow-list "
            f"({', '.join(foreign)}); refusing to load it"
        )


def load(fetched: Fetched) -> Predictor:
    """The predictor of a fetched model; deserializing is allowed only once it is trusted."""
    if not fetched.trusted:
        raise ModelRejectedError(f"{fetched.path} was not verified; refusing to load it")
    path = fetched.path
    mlmodel = signature.read_mlmodel(path)
    schema = signature.from_mlmodel(mlmodel)
    flavors = mlmodel.get("flavors") or {}
    if isinstance(flavors.get("sklearn"), dict):
        check_skops_types(path, flavors["sklearn"])
    # The digest check has proven these bytes are the ones training produced (or the
    # operator opted out with --allow-unverified): what MLflow's guard asks us to vouch for.
    os.environ[PICKLE_ENV] = "true"
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
    pyfunc = mlflow.pyfunc.load_model(str(path))
    estimator = probabilistic_estimator(pyfunc, flavors)
    if estimator is not None:
        LOG.info("class probabilities from %s.predict_proba", type(estimator).__name__)
    return Predictor(schema, None, pyfunc, estimator)


def probabilistic_estimator(pyfunc: Any, flavors: dict[str, Any]) -> Any:
    """The scikit-learn classifier under a pyfunc model, if it has ``predict_proba``.

    Only when pyfunc's ``predict`` is the estimator's own (a model logged with
    ``pyfunc_predict_fn="predict_proba"`` already answers probabilities) and the classes
    are one flat list (not a multi-output classifier).
    """
    conf = flavors.get("python_function")
    if "sklearn" not in flavors or not isinstance(conf, dict):
        return None
    if conf.get("predict_fn", "predict") != "predict":
        return None
    try:
        raw = pyfunc.get_raw_model()
    except Exception:  # NotImplementedError, or a wrapper that cannot say
        return None
    # Pipeline and SVC hide predict_proba (available_if) when it would not work.
    classes = getattr(raw, "classes_", None)
    if not callable(getattr(raw, "predict_proba", None)) or classes is None:
        return None
    return raw if np.asarray(classes).ndim == 1 else None
