"""Fetch a model version, prove it is the recorded one, and make a predictor of it.

``fetch`` downloads the model from MLflow (artifacts in MinIO/S3), computes
``toque.core.digest.model_digest`` over the download and compares it with the digest the
registry records, then fetches the run's feature bins and validation sample (both
optional). ``load`` loads it with ``mlflow.pyfunc`` and picks a fast path for its flavour:
the compiled forest (``toque.serving.forest``) for scikit-learn tree ensembles, compiled
boosted trees (``toque.serving.boosted``) for histogram gradient boosting, numpy
(``toque.serving.linear``) for scalers, one-hot encoding and a linear model, the estimator
itself fed arrays (``toque.serving.native``) for any other scikit-learn model (and for
those two when their compiled form is refused),
the module or the session for PyTorch and ONNX (``toque.serving.tensor``). A fast path is
taken only when ``toque.serving.exact`` finds it answers what pyfunc answers; anything
without one is served through pyfunc, and says so in the log and in
``toque_serving_fast_path``. Called once at startup by ``toque.serving.server``, before
workers fork, so they share the model's memory.

Class probabilities (the ``predict_proba`` output and the confidence histogram) come from
the compiled forest for free, and for a scikit-learn classifier with ``predict_proba``
from a second call on the same transformed rows: the labels still come from ``predict``,
since ``classes_[argmax(proba)]`` is not what every estimator predicts
(``SVC(probability=True)``, thresholded models).

Loading a model can run code from it (pickle, cloudpickle; skops within its trusted
types). So: a model without an expected digest is refused unless the server was started
with ``--allow-unverified``; MLflow's ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` stays
``false`` (``deny_deserialization``, at startup) until the digest has matched; and a
skops file is loaded only when every type it holds is on ``toque.core.trusted_types``'s
allow-list, whatever the model's own ``MLmodel`` claims to trust.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import pathlib
import tempfile
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.core import bins, digest, redact, retry, trusted_types
from toque.serving import boosted, exact, forest, linear, native, runner, signature, tensor

LOG = logging.getLogger("toque.serve")
PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
# The trainer's rows for the load-time check: inputs plus the flavour's predictions.
SAMPLE_PATH = "toque/validation-sample.parquet"
# A compiled forest visits a node in about 15 ns.
NODE_SECONDS = 15e-9
_BATCHING = {
    exact.EXACT: "on",
    exact.TRANSFORMS: "of the transforms (the final step's answers depend on the batch)",
    exact.OFF: "off (answers depend on the batch)",
}


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
    sample: Any = None  # the trainer's validation sample (a DataFrame), when it logged one


@dataclasses.dataclass
class Prediction:
    values: npt.NDArray[Any]  # one prediction per row (labels or numbers)
    class_index: npt.NDArray[np.intp] | None = None  # compiled classifiers only
    proba: npt.NDArray[np.float64] | None = None  # (rows, classes), columns as ``classes``
    inputs: Any = None  # what metrics and the sampler read (None: the inputs as given)


class Predictor:
    """The model behind the endpoints, and how it takes its inputs (``input``): a float64
    matrix in signature order, one vector per column, or (pyfunc) a DataFrame.

    ``fast``: the fast path (the compiled forest when ``compiled`` is given); None: pyfunc,
    for the reason ``fallback`` says. ``estimator``: the scikit-learn classifier under a
    pyfunc model, asked for ``predict_proba`` (None: the model offers no probabilities).
    ``batching``: how rows of several requests may share one call (``toque.serving.exact``:
    ``EXACT``, ``TRANSFORMS`` or ``OFF``).
    """

    def __init__(
        self,
        schema: signature.Schema | None,
        compiled: forest.Forest | None,
        pyfunc: Any,
        estimator: Any = None,
        *,
        fast: runner.Runner | None = None,
        batching: str | None = None,
        cost: exact.Cost | None = None,
        fallback: str = "",
    ) -> None:
        self.schema = schema
        self.compiled = compiled
        self.pyfunc = pyfunc
        self.estimator = estimator
        if fast is None and compiled is not None:
            fast = forest.Runner(compiled)
        self.fast = fast
        # The compiled forest answers each row on its own; others are checked at load.
        if batching is None:
            batching = exact.EXACT if compiled is not None else exact.OFF
        self.batching = batching
        self._cost = cost
        self.fallback = fallback
        self._proba_failed = False

    @property
    def path(self) -> str:
        """The fast path's name, or "pyfunc"."""
        return self.fast.kind if self.fast is not None else "pyfunc"

    @property
    def batchable(self) -> bool:
        return self.batching != exact.OFF

    @property
    def input(self) -> str:
        return self.fast.input if self.fast is not None else "frame"

    @property
    def numeric(self) -> bool:
        return self.input == "matrix"

    @property
    def classes(self) -> npt.NDArray[Any] | None:
        """The classes in ``proba`` column order; None for regressors and opaque models."""
        if self.fast is not None:
            return self.fast.classes
        if self.estimator is not None:
            return np.asarray(self.estimator.classes_)
        return None

    def work(self, rows: int) -> int:
        """Node visits a compiled prediction of ``rows`` rows makes (its cost, roughly)."""
        if self.compiled is None:
            return 0
        return rows * int(self.compiled.roots.size) * max(1, self.compiled.depth)

    def cost(self, rows: int) -> float:
        """Seconds a prediction of ``rows`` rows takes, roughly; pyfunc's is unknown (inf)."""
        if self.compiled is not None:
            return self.work(rows) * NODE_SECONDS
        if self.fast is not None:
            return self._cost(rows) if self._cost is not None else 0.0
        return float("inf")

    def predict(
        self,
        inputs: Any,
        want_proba: bool = False,
        confidence: bool = False,
        bounds: list[tuple[int, int]] | None = None,
    ) -> Prediction:
        """Predict; ``proba`` when the client (``want_proba``) or the metrics (``confidence``)
        want it, and always for the compiled forest, where it costs nothing extra.

        An estimator's ``predict_proba`` that fails while only the metrics wanted it is
        logged once and skipped, so serving does not depend on it; asked for, it raises.
        ``bounds``: the rows of each request in a micro-batch.
        """
        if self.fast is not None:
            run_parts = getattr(self.fast, "run_parts", None)
            if bounds and len(bounds) > 1 and self.batching == exact.TRANSFORMS and run_parts:
                out = run_parts(inputs, want_proba or confidence, bounds)
            else:
                out = self.fast.run(inputs, want_proba or confidence)
            if out.proba_error is not None:
                self._proba_failure(out.proba_error, want_proba)
            return Prediction(out.values, out.class_index, out.proba, out.inputs)
        values = runner.plain_values(self.pyfunc.predict(inputs))
        if self.estimator is None or not (want_proba or confidence):
            return Prediction(values)
        try:
            proba = np.asarray(self.estimator.predict_proba(inputs), dtype=np.float64)
            if proba.shape != (len(values), len(self.estimator.classes_)):
                raise ValueError(f"predict_proba returned shape {proba.shape}")
        except Exception as error:
            self._proba_failure(error, want_proba)
            return Prediction(values)
        return Prediction(values, proba=proba)

    def _proba_failure(self, error: Exception, asked: bool) -> None:
        if asked:
            raise error
        if not self._proba_failed:
            LOG.warning(
                "predict_proba failed; serving without class probabilities: %s",
                redact.redact(f"{type(error).__name__}: {error}"),
            )
        self._proba_failed = True


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
    sample = None
    if run_id:
        feature_bins = _fetch_bins(str(run_id), target, budget_s)
        sample = _fetch_sample(str(run_id), target, budget_s)
    else:
        LOG.info("model has no run id; no per-feature histograms")
    return Fetched(
        local,
        actual,
        str(run_id) if run_id else None,
        feature_bins,
        verified,
        trusted=True,
        sample=sample,
    )


def _fetch_sample(run_id: str, target: pathlib.Path, budget_s: float) -> Any:
    """The trainer's validation sample, or None (older runs, other trainers): optional."""
    import mlflow
    import pandas as pd

    def download() -> str:
        return str(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=SAMPLE_PATH, dst_path=str(target / "sample")
            )
        )

    try:
        path = retry.with_backoff(download, "download the validation sample", budget_s, LOG)
        return pd.read_parquet(path)
    except retry.DependencyDownError:
        raise
    except Exception as error:
        LOG.info(
            "run %s has no usable %s (%s)",
            run_id,
            SAMPLE_PATH,
            redact.redact(str(error)).splitlines()[0][:200] if str(error) else "",
        )
        return None


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
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(path))
    one_thread()
    estimator = probabilistic_estimator(pyfunc, flavors)
    refused = []
    for fast, fast_schema in candidates(pyfunc, flavors, schema):
        verdict = exact.check(fast, pyfunc, estimator, fast_schema, fetched.sample, fetched.bins)
        if verdict.ok:
            LOG.info(
                "fast path %s (%s input): %s%s; micro-batching %s",
                fast.kind,
                fast.input,
                "answers as pyfunc does" if verdict.rows else "checked by construction",
                f" on {verdict.rows} rows" if verdict.rows else "",
                _BATCHING[verdict.batching],
            )
            compiled = fast.compiled if isinstance(fast, forest.Runner) else None
            # pyfunc (and, for the forest, the estimator) is not needed any more: one copy.
            return Predictor(
                fast_schema,
                compiled,
                None,
                fast=fast,
                batching=verdict.batching,
                cost=verdict.cost,
            )
        refused.append(f"{fast.kind}: {verdict.reason}")
    reason = "; ".join(refused) or f"no fast path for {', '.join(flavors) or 'this model'}"
    LOG.warning("serving through mlflow.pyfunc (%s)", reason)
    if estimator is not None:
        LOG.info("class probabilities from %s.predict_proba", type(estimator).__name__)
    return Predictor(
        schema, None, pyfunc, estimator, fallback="refused" if refused else "unsupported"
    )


def one_thread() -> None:
    """One OpenMP thread per worker: workers and replicas are the parallelism.

    scikit-learn's OpenMP loops (boosted trees) cost milliseconds per call to wake a thread
    team when cores are shared, and a team started before ``fork`` hangs the workers.
    Predictions are the same on any number of threads. This sets the calling thread; the
    server also sets ``OMP_NUM_THREADS=1`` (unless set) before loading, for its pool threads.
    """
    try:
        threadpoolctl: Any = importlib.import_module("threadpoolctl")  # with scikit-learn
    except ImportError:
        return
    threadpoolctl.threadpool_limits(1, user_api="openmp")


def candidates(
    pyfunc: Any, flavors: dict[str, Any], schema: signature.Schema | None
) -> list[tuple[runner.Runner, signature.Schema | None]]:
    """Fast paths worth checking for this model, best first."""
    conf = flavors.get("python_function")
    loader = conf.get("loader_module") if isinstance(conf, dict) else None
    out: list[tuple[runner.Runner, signature.Schema | None]] = []
    try:
        raw = pyfunc.get_raw_model()
    except Exception:  # NotImplementedError, or a wrapper that cannot say
        return out
    if "sklearn" in flavors and loader == "mlflow.sklearn":
        method = str((conf or {}).get("predict_fn") or "predict")
        compiled = forest.compile_model(raw) if method == "predict" else None
        if compiled is not None:
            own = schema
            if own is None or (own.named and own.width != compiled.n_features):
                own = (
                    signature.from_names(compiled.feature_names)
                    if compiled.feature_names
                    else signature.Schema((), compiled.n_features)
                )
            if own.numeric:
                out.append((forest.Runner(compiled), own))
        own = schema if schema is not None else _schema_of(raw)
        trees = boosted.compile_model(raw) if method == "predict" else None
        if (
            trees is not None
            and own is not None
            and own.numeric
            and own.width == trees.n_features
            and not (own.named and native.needs_frame(raw, own))
        ):
            out.append((boosted.Runner(trees), own))
        if own is not None and (own.tabular or not own.named) and method in native.METHODS:
            native.quiet_feature_names()
            compiled_linear = linear.compile_model(raw, own, method)
            if compiled_linear is not None:
                out.append((compiled_linear, own))
            first = native.Sklearn(raw, own, method)
            out.append((first, own))
            if first.input == "matrix" and own.named:
                out.append((native.Sklearn(raw, own, method, frame=True), own))
    elif "pytorch" in flavors and loader == "mlflow.pytorch" and _matrix_schema(schema):
        out.append((tensor.torch_runner(pyfunc), schema))
    elif "onnx" in flavors and loader == "mlflow.onnx" and _matrix_schema(schema):
        with_session: list[runner.Runner] = []
        try:
            with_session.append(tensor.onnx_runner(pyfunc))
        except ValueError as error:
            LOG.info("no ONNX fast path: %s", error)
        out += [(r, schema) for r in with_session]
    return out


def _matrix_schema(schema: signature.Schema | None) -> bool:
    return schema is not None and schema.numeric and (schema.named or schema.width > 0)


def _schema_of(estimator: Any) -> signature.Schema | None:
    """A model logged without a signature: its fitted column names, or its width."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return signature.from_names([str(n) for n in names])
    width = getattr(estimator, "n_features_in_", None)
    return signature.Schema((), int(width)) if width else None


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
