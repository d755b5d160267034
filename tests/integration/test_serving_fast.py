"""Fast paths of ``toque serve`` as processes, against the session's MLflow and MinIO.

The four breast-cancer models of ``tests.unit.test_serving_native`` (forest, scaler +
logistic regression Pipeline, HistGradientBoosting, ColumnTransformer + logistic regression
on a mixed-type frame) are logged and registered as the trainer logs them, with its feature
bins and validation sample; one server each (the boosted trees with two workers, forked
after the load-time check). Every server must take its fast path, checked on the trainer's
sample, and answer scikit-learn's labels and probabilities for all 569 rows in every
request format; concurrent requests, micro-batched (the trees whole, the ColumnTransformer
pipeline's transforms), must come back each with its own answer.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import pathlib
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.integration import test_serving_server as base
from tests.unit import test_serving_native as native_tests
from toque.core import digest
from toque.local import services
from toque.serving import bins as serving_bins

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
WORKERS = {"hgb": 2}
PATHS = {"forest": "forest", "pipeline": "linear", "hgb": "boosted", "columns": "linear"}


@dataclasses.dataclass
class Server:
    name: str
    url: str
    log: pathlib.Path
    model: Any
    frame: pd.DataFrame


def _log(name: str, fitted: Any, frame: pd.DataFrame, workdir: pathlib.Path) -> tuple[str, str]:
    import mlflow
    import skops.io

    registered = f"fast-{name}"
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            registered_model_name=registered,
            signature=mlflow.models.infer_signature(frame, fitted.predict(frame)),
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(fitted)),
        )
        serving_bins.log_bins(frame, run.info.run_id, workdir / name)
        # What the trainer logs (toque.trainer.run._log_validation_sample).
        sample = frame.head(64).assign(**{"toque.prediction": fitted.predict(frame.head(64))})
        path = workdir / name / "validation-sample.parquet"
        sample.to_parquet(path, index=False)
        mlflow.MlflowClient().log_artifact(run.info.run_id, str(path), "toque")
    uri = f"models:/{registered}/{info.registered_model_version}"
    local = mlflow.artifacts.download_artifacts(uri, dst_path=str(workdir / name / "check"))
    return uri, digest.model_digest(pathlib.Path(local))


@pytest.fixture(scope="module")
def servers(
    mlflow_server: services.Mlflow, minio: services.Minio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    workdir = tmp_path_factory.mktemp("fast")
    env = base._env(mlflow_server, minio)
    models = native_tests.cancer_models()
    logged = {}
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_URI", *minio.env()):
            patch.setenv(key, env[key])
        for name, (fitted, frame) in models.items():
            (workdir / name).mkdir()
            logged[name] = _log(name, fitted, frame, workdir)
    started: dict[str, Server] = {}
    procs = []
    try:
        for name, (uri, model_digest) in logged.items():
            log = workdir / f"{name}.log"
            url, proc = base._start(
                env,
                log,
                "--model-uri",
                uri,
                "--model-name",
                name,
                "--version",
                uri.rsplit("/", 1)[1],
                "--expected-digest",
                model_digest,
                "--workers",
                str(WORKERS.get(name, 1)),
            )
            procs.append(proc)
            started[name] = Server(name, url, log, *models[name])
        for server, proc in zip(started.values(), procs, strict=True):
            base._wait_ready(server.url, proc, server.log)
        yield started
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_every_model_takes_its_fast_path_checked_on_the_trainers_sample(
    servers: dict[str, Server],
) -> None:
    for name, server in servers.items():
        with urllib.request.urlopen(server.url + "/metrics") as response:
            text = response.read().decode()
        version = 'version="1"'
        assert (
            f'toque_serving_fast_path{{model="{name}",path="{PATHS[name]}",reason="",{version}}}'
            in text
        ), name
        assert "answers as pyfunc does on 64 rows" in server.log.read_text(), name


@pytest.mark.parametrize("name", list(PATHS))
def test_all_569_rows_get_sklearns_answers_in_every_request_format(
    servers: dict[str, Server], name: str
) -> None:
    server = servers[name]
    frame = server.frame
    expected = server.model.predict(frame).tolist()
    proba = server.model.predict_proba(native_tests.as_request(frame))
    split = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    assert base._post(server.url + "/invocations", split) == (200, {"predictions": expected})
    records = {"dataframe_records": frame.to_dict(orient="records")}
    assert base._post(server.url + "/invocations", records) == (200, {"predictions": expected})
    tensors = [native_tests.per_column(frame)]
    if name != "columns":
        tensors.append(
            [
                {
                    "name": "input-0",
                    "shape": list(frame.shape),
                    "datatype": "FP64",
                    "data": frame.to_numpy().ravel().tolist(),
                }
            ]
        )
    for inputs in tensors:
        status, answer = base._post(
            f"{server.url}/v2/models/{name}/infer",
            {"inputs": inputs, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]},
        )
        assert status == 200, answer
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["predict"]["data"] == expected
        got = np.asarray(outputs["predict_proba"]["data"]).reshape(proba.shape)
        assert np.array_equal(got, proba)


def _batch_rows(server: Server) -> tuple[float, float]:
    """(rows, calls) of the model so far, from the batch-size histogram."""
    with urllib.request.urlopen(server.url + "/metrics") as response:
        text = response.read().decode()
    found = {
        line.split("{", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("toque_serving_batch_rows_sum", "toque_serving_batch_rows_count"))
    }
    return found["toque_serving_batch_rows_sum"], found["toque_serving_batch_rows_count"]


def _settled(server: Server) -> tuple[float, float]:
    """``_batch_rows`` once two scrapes a publishing interval apart agree: with two workers a
    scrape adds the other's snapshot, which it writes every second."""
    deadline = time.monotonic() + 15
    last = _batch_rows(server)
    while time.monotonic() < deadline:
        time.sleep(1.2)
        now = _batch_rows(server)
        if now == last:
            return now
        last = now
    return last


@pytest.mark.parametrize("name", ["hgb", "columns"])
def test_concurrent_one_row_requests_each_get_their_own_answer(
    servers: dict[str, Server], name: str
) -> None:
    server = servers[name]
    frame = server.frame.iloc[:200]
    expected = server.model.predict(frame).tolist()
    before = _settled(server)

    def ask(i: int) -> Any:
        row = frame.iloc[[i]]
        split = {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
        return base._post(server.url + "/invocations", split)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(len(frame))))
    assert answers == [(200, {"predictions": [label]}) for label in expected]
    rows, calls = _settled(server)
    assert rows - before[0] == len(frame) and 0 < calls - before[1] <= len(frame)
