"""``toque train``: one training run inside the training pod.

Order matters for the operator: permanent problems (bad spec, missing dataset, entrypoint
that does not import) exit with ``exitcodes.PERMANENT`` before any MLflow run exists, so the
Job fails at once; unreachable dependencies exit with ``exitcodes.TRANSIENT`` after retrying,
and the Job replaces the pod. Every exit writes the termination message, which the operator
copies into the TrainingJob's status: it, the log and the MLflow tags are redacted
(``toque.core.redact``), since errors quote the ``user:pass@`` URLs they failed on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
import math
import os
import pathlib
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from toque.api import trainresult
from toque.core import bins, digest, exitcodes, redact, retry, transient, trusted_types
from toque.trainer import context, lineage, report_artifacts, spec

LOG = logging.getLogger("toque.train")
TRACEBACK_TAIL = 3000
_METRIC_NAME = re.compile(r"[^\w.\- :/]")


class PermanentError(Exception):
    """Retrying cannot fix it."""

    transient = False


def termination_path() -> pathlib.Path:
    # The node agent cannot offer /dev/termination-log; it tells us its own path.
    return pathlib.Path(os.environ.get("TOQUE_TERMINATION_MESSAGE_PATH", "/dev/termination-log"))


def write_termination(message: str) -> None:
    try:
        termination_path().write_text(redact.redact(message)[-trainresult.LIMIT :])
    except OSError as error:
        LOG.warning("could not write the termination message: %s", error)


def budget() -> float:
    return float(os.environ.get("TOQUE_DEPENDENCY_TIMEOUT", "120"))


def load_entrypoint(entrypoint: str) -> Callable[..., Any]:
    module_name, _, attr = entrypoint.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise PermanentError(f"cannot load entrypoint {entrypoint}: {error}") from error
    if not callable(target):
        raise PermanentError(f"entrypoint {entrypoint} is not callable")
    return target  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True)
class Code:
    pinned: str  # name@sha256:…
    path: pathlib.Path
    revision: str | None


def fetch_code(run: spec.RunSpec, workdir: pathlib.Path) -> Code | None:
    """Fetch and verify the code snapshot and put it first on ``sys.path``."""
    if run.code is None:
        return None
    from toque.data import errors as data_errors
    from toque.data import store as data_store

    store = retry.with_backoff(
        data_store.DataStore.from_env, "connect to the data store", budget(), LOG
    )
    ref = run.code.ref
    dest = workdir / "code"
    try:
        resolved = retry.with_backoff(
            functools.partial(store.resolve, ref), f"resolve {ref}", budget(), LOG
        )
        retry.with_backoff(
            functools.partial(store.pull, resolved.pinned, dest),
            f"pull {resolved.pinned}",
            budget(),
            LOG,
        )
    except (data_errors.DatasetNotFound, data_errors.CorruptedObject) as error:
        raise PermanentError(f"code snapshot {ref}: {error}") from error
    marker = dest / lineage.REVISION_FILE
    revision = marker.read_text().strip() if marker.is_file() else None
    sys.path.insert(0, str(dest))
    importlib.invalidate_caches()
    LOG.info("code %s → %s (revision %s)", ref, resolved.pinned, revision or "unknown")
    return Code(resolved.pinned, dest, revision)


def fetch_datasets(run: spec.RunSpec, workdir: pathlib.Path) -> dict[str, context.Dataset]:
    if not run.datasets:
        return {}
    from toque.data import errors as data_errors
    from toque.data import store as data_store

    store = retry.with_backoff(
        data_store.DataStore.from_env, "connect to the data store", budget(), LOG
    )
    out: dict[str, context.Dataset] = {}
    for item in run.datasets:
        try:
            resolved = retry.with_backoff(
                functools.partial(store.resolve, item.ref), f"resolve {item.ref}", budget(), LOG
            )
            dest = workdir / "data" / (item.alias or resolved.name)
            manifest = retry.with_backoff(
                functools.partial(store.pull, resolved.pinned, dest),
                f"pull {resolved.pinned}",
                budget(),
                LOG,
            )
        except (data_errors.DatasetNotFound, data_errors.CorruptedObject) as error:
            raise PermanentError(f"dataset {item.ref}: {error}") from error
        files = tuple(sorted(f.path for f in manifest.files))
        out[item.alias or resolved.name] = context.Dataset(
            name=resolved.name, ref=item.ref, pinned=resolved.pinned, path=dest, files=files
        )
        LOG.info("dataset %s → %s (%d files)", item.ref, resolved.pinned, len(files))
    return out


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = redact.redact_url(str(value))[:6000]
    return out


def fairness_metrics(run: spec.RunSpec, model: Any, result: context.Result) -> dict[str, float]:
    """Per-group values of the gate's fairness metric on the validation data."""
    rule = run.evaluation.fairness if run.evaluation else None
    if rule is None or result.validation is None or not result.label_column:
        return {}
    from sklearn import metrics as skm

    scorers: dict[str, Callable[..., float]] = {
        "accuracy": skm.accuracy_score,
        "recall": skm.recall_score,
        "precision": skm.precision_score,
        "f1": skm.f1_score,
    }
    name = rule.metric.removeprefix("val_")
    scorer = scorers.get(name)
    if scorer is None:
        raise PermanentError(f"fairness metric {rule.metric} is not one of {sorted(scorers)}")
    frame = result.validation
    if rule.group_column not in frame.columns:
        raise PermanentError(f"fairness column {rule.group_column} not in validation data")
    label = result.label_column
    features = result.feature_columns or [
        c for c in frame.columns if c not in (label, rule.group_column)
    ]
    out: dict[str, float] = {}
    for group, rows in frame.groupby(rule.group_column):
        predictions = model.predict(rows[features])
        key = _METRIC_NAME.sub("_", f"fairness.{rule.group_column}.{group}.{name}")
        out[key] = float(scorer(rows[label], predictions))
    return out


@dataclasses.dataclass
class Outcome:
    result: trainresult.TrainResult
    keep: set[str]


def train(entrypoint: str) -> Outcome:
    import mlflow
    from mlflow import entities

    run, identity = spec.from_env()
    workdir = pathlib.Path(os.environ.get("TOQUE_WORKDIR") or tempfile.mkdtemp(prefix="toque-"))
    code = fetch_code(run, workdir)
    fn = load_entrypoint(entrypoint)
    datasets = fetch_datasets(run, workdir)
    module_file = inspect.getsourcefile(fn)
    revision = (code.revision if code else None) or lineage.code_revision(
        pathlib.Path(module_file) if module_file else None
    )

    experiment = retry.with_backoff(
        lambda: mlflow.set_experiment(run.experiment or "Default"),
        "reach MLflow",
        budget(),
        LOG,
    )
    tags = {
        "toque.trainingjob.namespace": identity.namespace,
        "toque.trainingjob.name": identity.name,
        "toque.trainingjob.uid": identity.uid,
        "toque.image": identity.image,
        "toque.entrypoint": entrypoint,
        "toque.code_revision": revision or "",
        "toque.code": code.pinned if code else "",
        # The registered model the run is for: `toque report run:ID` finds its champion by it.
        **({"toque.model": run.model.name} if run.model else {}),
        **{f"toque.dataset.{alias}": d.pinned for alias, d in datasets.items()},
    }
    tags = {key: redact.redact_url(value) for key, value in tags.items()}
    active = retry.with_backoff(
        lambda: mlflow.start_run(
            experiment_id=experiment.experiment_id, run_name=identity.name or None, tags=tags
        ),
        "start the MLflow run",
        budget(),
        LOG,
    )
    client = mlflow.MlflowClient()
    run_id = active.info.run_id
    status = "FAILED"
    try:
        ctx = context.TrainContext(
            params=dict(run.params), datasets=datasets, workdir=workdir, logger=LOG
        )
        returned = fn(ctx)
        result = returned if isinstance(returned, context.Result) else context.Result(returned)
        ctx.log_metrics(result.metrics)
        ctx.log_metrics(fairness_metrics(run, result.model, result))
        _log_batch(client, run_id, ctx, {**_flatten(run.params), **_flatten(ctx._params)}, entities)
        for path, artifact_path in ctx._artifacts:
            client.log_artifact(run_id, str(path), artifact_path)
        model_uri, model_digest = _log_model(run, result, workdir)
        if model_digest:
            client.set_tag(run_id, "toque.model_digest", model_digest)
        _log_feature_bins(client, run_id, result, workdir)
        _log_validation_sample(client, run_id, result, workdir)
        _log_report_artifacts(client, run_id, result, workdir)
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)
    keep = _gate_metrics(run)
    out = trainresult.TrainResult(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        model_uri=model_uri,
        model_digest=model_digest,
        metrics={k: v for k, v in ctx.metrics.items() if math.isfinite(v)},
        datasets=[
            trainresult.DatasetUse(ref=d.ref, digest=d.pinned.split("@", 1)[1])
            for d in datasets.values()
        ],
        code_revision=revision,
    )
    return Outcome(out, keep)


def _log_batch(
    client: Any, run_id: str, ctx: context.TrainContext, params: dict[str, str], entities: Any
) -> None:
    """Metrics and params in batches: one call costs about what one log_metric costs."""
    now = int(time.time() * 1000)
    metrics = [
        entities.Metric(k, v, now, 0)
        for k, v in ctx.metrics.items()
        if not any(k == s[0] for s in ctx._steps)
    ]
    metrics += [entities.Metric(k, v, now, step) for k, v, step in ctx._steps]
    param_list = [entities.Param(k, v) for k, v in params.items()]
    # MLflow caps a batch at 1000 metrics and 100 params.
    for i in range(0, max(len(metrics), len(param_list)), 100):
        client.log_batch(run_id, metrics=metrics[i : i + 100], params=param_list[i : i + 100])


def _features(result: context.Result) -> Any:
    """The model-input columns of the validation frame, or ``None``."""
    if result.validation is None or not result.label_column:
        return None
    columns = result.feature_columns or [
        c for c in result.validation.columns if c != result.label_column
    ]
    return result.validation[columns]


def _log_feature_bins(
    client: Any, run_id: str, result: context.Result, workdir: pathlib.Path
) -> None:
    """``toque/feature-bins.json``: the drift profile of the validation data.

    The model server reads its buckets for the per-feature histograms
    (``toque.core.bins.parse``); the drift monitor compares live traffic with its counts,
    its prediction distribution and, for classifiers, its accuracy per confidence bucket.
    When the profile cannot be built the plain bins are written instead, and when not even
    they can, the run goes on without: drift monitoring is not worth failing a run for.
    """
    features = _features(result)
    if result.model is None or features is None or result.validation is None:
        return
    directory = workdir / "toque-bins"
    label = result.label_column
    labels = result.validation[label] if label and label in result.validation else None
    try:
        path = _write_profile(result.model, features, labels, run_id, directory)
    except Exception as error:
        LOG.warning("no drift profile (plain feature bins only): %s", redact.redact(str(error)))
        try:
            path = bins.write_bins(features, directory)
        except Exception as error:
            LOG.warning("no feature bins: %s", redact.redact(str(error)))
            return
    client.log_artifact(run_id, str(path), bins.ARTIFACT_DIR)


def _log_validation_sample(
    client: Any, run_id: str, result: context.Result, workdir: pathlib.Path
) -> None:
    """``toque/validation-sample.parquet``: up to 64 validation rows and the model's own
    predictions of them (column ``toque.prediction``), which the model server compares its
    fast path with at load (``toque.serving.exact``). Non-fatal like the bins.
    """
    features = _features(result)
    if result.model is None or features is None:
        return
    try:
        sample = features.head(64).reset_index(drop=True)
        predictions = result.model.predict(sample)
        if getattr(predictions, "ndim", 1) == 1 and len(predictions) == len(sample):
            sample = sample.assign(**{"toque.prediction": list(predictions)})
        directory = workdir / "toque-sample"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "validation-sample.parquet"
        sample.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), bins.ARTIFACT_DIR)
    except Exception as error:
        LOG.warning("no validation sample: %s", redact.redact(str(error)))


def _log_report_artifacts(
    client: Any, run_id: str, result: context.Result, workdir: pathlib.Path
) -> None:
    """The validation predictions and feature importance ``toque report`` plots.

    Non-fatal like the bins: a report without its plots is no reason to fail a run.
    """
    features = _features(result)
    if result.model is None or features is None or result.validation is None:
        return
    label = result.label_column
    labels = result.validation[label] if label and label in result.validation else None
    for path in report_artifacts.write(result.model, features, labels, workdir / "toque-report"):
        try:
            client.log_artifact(run_id, str(path), report_artifacts.ARTIFACT_DIR)
        except Exception as error:
            LOG.warning("could not log %s: %s", path.name, redact.redact(str(error)))


def _write_profile(
    model: Any, features: Any, labels: Any, run_id: str, directory: pathlib.Path
) -> pathlib.Path:
    from toque.drift import profile

    predictions = proba = classes = None
    try:
        predictions = model.predict(features)
    except Exception as error:  # a pyfunc PythonModel's predict takes a context first
        LOG.warning("drift profile without predictions: %s", redact.redact(str(error)))
    found = getattr(model, "classes_", None)
    if predictions is not None and found is not None and hasattr(model, "predict_proba"):
        try:
            proba, classes = model.predict_proba(features), list(found)
        except Exception as error:
            LOG.warning("drift profile without performance: %s", redact.redact(str(error)))
    built = profile.build_profile(
        features,
        predictions=predictions,
        labels=labels,
        proba=proba,
        classes=classes,
        source=f"run:{run_id}",
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / bins.ARTIFACT_FILE
    path.write_bytes(profile.to_json(built))
    return path


def _log_model(
    run: spec.RunSpec, result: context.Result, workdir: pathlib.Path
) -> tuple[str | None, str | None]:
    if result.model is None:
        return None, None
    import mlflow

    flavor = run.model.flavor if run.model else "sklearn"
    signature = None
    features = _features(result)
    if features is not None:
        from mlflow.models import infer_signature

        try:
            signature = infer_signature(features, result.model.predict(features))
        except Exception as error:  # a signature is a nicety, not worth failing the run
            LOG.warning("no model signature: %s", redact.redact(str(error)))
    module: Any = {"sklearn": mlflow.sklearn, "pyfunc": mlflow.pyfunc}.get(flavor)
    if flavor == "pytorch":
        import mlflow.pytorch

        module = mlflow.pytorch
    if module is None:
        raise PermanentError(f"unsupported model flavor {flavor}")
    extra: dict[str, Any] = {}
    if flavor == "sklearn":
        trusted = skops_trusted_types(result.model)
        if trusted:
            extra["skops_trusted_types"] = trusted
    info = module.log_model(result.model, name="model", signature=signature, **extra)
    # Digest what the store actually holds, so it also proves the upload is complete.
    local = pathlib.Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=info.model_uri, dst_path=str(workdir / "model-check")
        )
    )
    return str(info.model_uri), digest.model_digest(local)


def skops_trusted_types(model: Any) -> list[str]:
    """The types skops must be told to trust to save (and later load) ``model``.

    MLflow 3 saves scikit-learn models with skops, which refuses types it cannot vouch for
    (a tree's ``Tree``, a calibrator). Only scikit-learn's own types are trusted
    (``toque.core.trusted_types``); a model holding anything else is refused here, since the
    list is stored with the model and the server would otherwise have to trust it blindly.
    """
    import skops.io

    try:
        found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as error:
        raise PermanentError(
            f"the model cannot be saved with skops ({type(error).__name__}: {error}); "
            "use plain scikit-learn estimators, or the pyfunc flavor"
        ) from error
    foreign = trusted_types.foreign(found)
    if foreign:
        raise PermanentError(
            f"the model holds type(s) outside the skops allow-list: {', '.join(foreign)}; "
            "only scikit-learn's own types are trusted for the sklearn flavor (use only "
            "scikit-learn estimators, or log the model with the pyfunc flavor)"
        )
    return trusted_types.trusted(found)


def _gate_metrics(run: spec.RunSpec) -> set[str]:
    gate = run.evaluation
    if gate is None:
        return set()
    keep = {t.metric for t in gate.thresholds or []}
    if gate.must_beat_champion:
        keep.add(gate.must_beat_champion.metric)
    if gate.max_train_validation_gap:
        m = gate.max_train_validation_gap.metric
        keep |= {f"train_{m}", f"val_{m}"}
    return keep


def main(entrypoint: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    redact.install()  # also what MLflow and botocore log
    # Our own retry loop decides how long to wait for MLflow; its client should fail fast.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        outcome = train(entrypoint)
    except PermanentError as error:
        message = redact.redact(str(error))
        LOG.error("%s", message)
        write_termination(trainresult.failure("PermanentError", message))
        return exitcodes.PERMANENT
    except retry.DependencyDownError as error:
        message = redact.redact(str(error))
        LOG.error("dependency unavailable: %s", message)
        write_termination(trainresult.failure("DependencyUnavailable", message))
        return exitcodes.TRANSIENT
    except Exception as error:
        tail = redact.redact("".join(traceback.format_exception(error)))[-TRACEBACK_TAIL:]
        LOG.error("training failed:\n%s", tail)
        code = exitcodes.TRANSIENT if transient.is_transient(error) else exitcodes.FAILED
        kind = "DependencyUnavailable" if code == exitcodes.TRANSIENT else "UserCodeFailed"
        write_termination(trainresult.failure(kind, tail))
        return code
    write_termination(trainresult.encode(outcome.result, outcome.keep))
    LOG.info(
        "run %s finished; model %s (%s)",
        outcome.result.run_id,
        outcome.result.model_uri,
        outcome.result.model_digest,
    )
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
