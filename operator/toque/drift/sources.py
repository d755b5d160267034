"""Where references and current rows come from: files, datasets, MLflow runs, samples.

Called by ``toque drift profile`` and ``toque drift check``. A reference is a Parquet/CSV
file or a directory of them (profiled on the spot), a profile ``.json``,
``dataset:NAME@TAG`` / ``dataset:NAME:TAG`` / ``dataset:NAME@sha256:…`` (pulled with
``toque.data.store.DataStore`` and profiled), or ``runs:/RUN_ID`` (the run's
``toque/feature-bins.json`` artifact, downloaded with mlflow, which must be a profile).
Current rows are files, or ``samples:NAMESPACE/MODEL/VERSION``: the Parquet files the model
server's sampler (``toque.serving.sampler``) wrote under
``serving-samples/NAMESPACE/MODEL/VERSION/`` of the
store bucket, whose objects were last modified within the window (not the labelled
feedback rows under ``feedback/``: those rows were served once already). The sampler's
``prediction`` column holds the model's outputs (class probabilities as lists) and
``timestamp`` when the rows were served. Store and mlflow failures become ``InputError``
(one line, for the CLI's exit code 2).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import io
import pathlib
import re
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from toque.core import bins
from toque.drift import profile, types

SAMPLES = "samples:"
DATASET = "dataset:"
RUNS = "runs:/"
PREDICTION = "prediction"  # the sampler's column of model outputs
SAMPLES_PREFIX = "serving-samples"  # toque.serving.sampler.PREFIX (not imported: no numpy)
FEEDBACK = "feedback/"  # toque.serving.sampler.FEEDBACK: labelled rows, served once already
_SUFFIXES = (".parquet", ".pq", ".csv")
_WINDOW_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> datetime.timedelta:
    """``90s``, ``30m``, ``1h``, ``7d`` as a timedelta."""
    found = _WINDOW_RE.match(text.strip())
    if not found or float(found.group(1)) <= 0:
        raise types.InputError(f"invalid window {text!r}: expected e.g. 30m, 1h, 7d")
    return datetime.timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


# -- files -----------------------------------------------------------------------------------


def _read_one(path: pathlib.Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise types.InputError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:  # pyarrow's errors are not all OSError/ValueError
        raise types.InputError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def read_frame(path: pathlib.Path) -> pd.DataFrame:
    """A Parquet or CSV file, or every such file under a directory, as one frame."""
    if not path.exists():
        raise types.InputError(f"no such file or directory: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise types.InputError(f"no .parquet or .csv files under {path}")
        return _concat([_read_one(p) for p in files])
    if path.suffix.lower() not in _SUFFIXES:
        raise types.InputError(f"{path}: expected a .parquet or .csv file")
    return _read_one(path)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# -- references ------------------------------------------------------------------------------


def split_frame(
    frame: pd.DataFrame, label: str | None, classes: Sequence[str] | None
) -> dict[str, Any]:
    """``build_profile`` keyword arguments from a frame with model inputs, an optional
    label column and an optional ``prediction`` column (values, or probability lists)."""
    drop = [c for c in (label, PREDICTION) if c is not None and c in frame.columns]
    if label is not None and label not in frame.columns:
        raise types.InputError(f"no label column {label!r} in the reference")
    arguments: dict[str, Any] = {"frame": frame.drop(columns=drop)}
    labels = frame[label] if label is not None else None
    predictions, proba = outputs(frame, classes)
    if proba is not None:
        names = list(classes) if classes else [str(i) for i in range(proba.shape[1])]
        arguments.update(proba=proba, classes=names, labels=labels)
        predictions = np.asarray(names, dtype=object)[np.argmax(proba, axis=1)]
    if predictions is None and labels is not None:
        # No model outputs: the label distribution stands in for the expected outputs.
        predictions = labels.to_numpy()
    arguments["predictions"] = predictions
    return arguments


def outputs(frame: pd.DataFrame, classes: Sequence[str] | None = None) -> tuple[Any, Any]:
    """(predictions, proba) from the ``prediction`` column; a column of probability lists
    gives proba, and predictions as the argmax over ``classes`` when they are known."""
    if PREDICTION not in frame.columns:
        return None, None
    column = frame[PREDICTION]
    first = column.dropna().head(1).tolist()
    if not first or not isinstance(first[0], list | tuple | np.ndarray):
        return column.to_numpy(), None
    proba = np.vstack([np.asarray(v, dtype=np.float64) for v in column.tolist()])
    if classes:
        return np.asarray(list(classes), dtype=object)[np.argmax(proba, axis=1)], proba
    return None, proba


def load_reference(
    ref: str, *, label: str | None = None, classes: Sequence[str] | None = None
) -> types.Profile:
    """The profile ``ref`` names, built from rows when it names rows."""
    if ref.startswith(RUNS):
        return _run_profile(ref[len(RUNS) :].strip("/"))
    if not ref.startswith(DATASET) and ref.lower().endswith(".json"):
        path = pathlib.Path(ref)
        try:
            return profile.from_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise types.InputError(f"no such file: {path}") from exc
        except types.ProfileError as exc:
            raise types.ProfileError(f"{path}: {exc}") from exc
    frame, source = load_rows(ref)
    return profile.build_profile(**split_frame(frame, label, classes), source=source)


def load_rows(ref: str) -> tuple[pd.DataFrame, str]:
    """(rows, source) of a file, a directory or ``dataset:REF``."""
    if ref.startswith(DATASET):
        return _dataset(ref[len(DATASET) :])
    path = pathlib.Path(ref)
    return read_frame(path), f"file:{path}"


def _dataset(text: str) -> tuple[pd.DataFrame, str]:
    from toque.data import errors, store

    name, at, tag = text.partition("@")
    ref = f"{name}:{tag}" if at and not tag.startswith("sha256:") else text
    try:
        data = store.DataStore.from_env()
        with tempfile.TemporaryDirectory(prefix="toque-drift-") as directory:
            found = data.pull(ref, pathlib.Path(directory))
            frame = read_frame(pathlib.Path(directory))
    except errors.DataError as exc:
        raise types.InputError(f"dataset {ref}: {exc}") from exc
    return frame, f"dataset:{found.name}@{found.digest}"


def _run_profile(run_id: str) -> types.Profile:
    try:
        import mlflow
    except ImportError as exc:
        raise types.InputError("runs:/ references need mlflow (pip install 'toque[ml]')") from exc
    with tempfile.TemporaryDirectory(prefix="toque-drift-") as directory:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=bins.ARTIFACT_PATH, dst_path=directory
            )
            data = pathlib.Path(path).read_bytes()
        except Exception as exc:  # mlflow raises many kinds; all mean "no profile here"
            message = " ".join(str(exc).split())[:300]
            raise types.InputError(f"run {run_id}: no {bins.ARTIFACT_PATH}: {message}") from exc
    try:
        found = profile.from_json(data)
    except types.ProfileError as exc:
        raise types.ProfileError(f"run {run_id}: {exc}") from exc
    return found if found.source else dataclasses.replace(found, source=f"run:{run_id}")


# -- current rows ----------------------------------------------------------------------------


def load_current(
    specs: Iterable[str], window: datetime.timedelta, *, now: datetime.datetime | None = None
) -> pd.DataFrame | None:
    """The current rows of every spec, concatenated; None when there are none (no samples
    in the window), which the caller reports as insufficient data."""
    frames = []
    for spec in specs:
        if spec.startswith(SAMPLES):
            frames += samples(spec[len(SAMPLES) :], window, now=now)
        else:
            frames.append(read_frame(pathlib.Path(spec)))
    frames = [f for f in frames if len(f)]
    return _concat(frames) if frames else None


def samples(
    target: str,
    window: datetime.timedelta,
    *,
    now: datetime.datetime | None = None,
    bucket: Any = None,
) -> list[pd.DataFrame]:
    """The sampler's files for ``NAMESPACE/MODEL/VERSION`` last modified within ``window`` of
    ``now`` (``bucket``: a ``toque.data.s3.Bucket``, default the store's from the
    environment)."""
    from toque.data import config, errors, s3

    parts = target.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise types.InputError(
            f"invalid samples reference {target!r}: expected NAMESPACE/MODEL/VERSION, "
            "the ModelVersion's namespace, model and registry version (e.g. "
            "samples:team-a/churn/3)"
        )
    namespace, model, version = parts
    now = now or datetime.datetime.now(datetime.UTC)
    since = now - window
    base = f"{SAMPLES_PREFIX}/{namespace}/{model}/{version}/"
    try:
        bucket = bucket or s3.Bucket(config.StoreConfig.from_env())
        keys = [
            item.key
            for prefix in _day_prefixes(base, since, now)
            for item in bucket.keys(prefix)
            if item.key.endswith(".parquet")
            and item.modified >= since
            and not item.key.startswith(base + FEEDBACK)
        ]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(bucket.get, keys))
    except errors.DataError as exc:
        raise types.InputError(f"samples of {namespace}/{model}/{version}: {exc}") from exc
    frames = []
    for key, body in zip(keys, bodies, strict=True):
        if body is None:  # removed since the listing (a lifecycle rule)
            continue
        try:
            frames.append(pd.read_parquet(io.BytesIO(body)))
        except Exception as exc:  # a damaged file: say which
            raise types.InputError(f"cannot read sample file {key}: {exc}") from exc
    return frames


def _day_prefixes(base: str, since: datetime.datetime, now: datetime.datetime) -> list[str]:
    """The sampler's ``yyyy-mm-dd/`` folders the window spans (one day of slack each side
    for clock skew); the whole model version when the window spans more than a month."""
    first = (since - datetime.timedelta(days=1)).date()
    last = (now + datetime.timedelta(days=1)).date()
    days = (last - first).days
    if days > 32:
        return [base]
    return [f"{base}{first + datetime.timedelta(days=i)}/" for i in range(days + 1)]
