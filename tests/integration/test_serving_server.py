"""``toque serve`` as a process against the real MLflow and MinIO of the session fixtures.

One forest server is shared by the module (predictions, 4xx/413, metrics, samples); a
pyfunc server started with ``--allow-unverified`` covers the generic path (a 500 that names
only a request id, the detail in the log) and SIGTERM draining; further starts prove that a
digest mismatch, or no digest at all, exits 3 without ever listening.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from toque.core import digest
from toque.local import cluster as local
from toque.local import services
from toque.serving import bins

# MLflow warns about its own type-hint inference while logging; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
MODEL = "serve-rf"
BUCKET = "serving-samples-test"


@dataclasses.dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: pathlib.Path
    model: Any
    frame: pd.DataFrame
    digest: str
    uri: str
    env: dict[str, str]


def _env(mlflow_server: services.Mlflow, minio: services.Minio) -> dict[str, str]:
    return {
        **os.environ,
        **minio.env(),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "TOQUE_SAMPLE_BATCH_ROWS": "20",
        "TOQUE_SAMPLE_INTERVAL_SECONDS": "1",
        "TOQUE_DEPENDENCY_TIMEOUT": "10",
    }


def _start(
    env: dict[str, str], log: pathlib.Path, *args: str
) -> tuple[str, subprocess.Popen[bytes]]:
    port = local.free_port()
    toque = str(pathlib.Path(sys.executable).with_name("toque"))
    proc = subprocess.Popen(
        [toque, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return f"http://127.0.0.1:{port}", proc


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(log.read_text()[-3000:])


def _post(url: str, document: Any, raw: bytes | None = None) -> tuple[int, Any]:
    body = raw if raw is not None else json.dumps(document).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _log_forest(env: dict[str, str], workdir: pathlib.Path) -> tuple[Any, pd.DataFrame, str, str]:
    import mlflow
    import skops.io
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    frame, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(frame, y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=MODEL,
            signature=mlflow.models.infer_signature(frame, model.predict(frame)),
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
        )
        bins.log_bins(frame, run.info.run_id, workdir)
    version = info.registered_model_version
    uri = f"models:/{MODEL}/{version}"
    local_dir = mlflow.artifacts.download_artifacts(uri, dst_path=str(workdir / "check"))
    return model, frame, uri, digest.model_digest(pathlib.Path(local_dir))


@pytest.fixture(scope="module")
def served(
    mlflow_server: services.Mlflow, minio: services.Minio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("serve")
    env = _env(mlflow_server, minio)
    minio.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_URI", *minio.env()):
            patch.setenv(key, env[key])
        model, frame, uri, model_digest = _log_forest(env, workdir)
    log = workdir / "serve.log"
    url, proc = _start(
        env,
        log,
        "--model-uri",
        uri,
        "--model-name",
        MODEL,
        "--version",
        uri.rsplit("/", 1)[1],
        "--expected-digest",
        model_digest,
        "--sample-rate",
        "1",
        "--sample-bucket",
        BUCKET,
        "--max-body-bytes",
        "200000",
    )
    try:
        _wait_ready(url, proc, log)
        yield Served(url, proc, log, model, frame, model_digest, uri, env)
    finally:
        proc.terminate()
        proc.wait(30)


def test_predictions_equal_sklearn(served: Served) -> None:
    rows = served.frame.iloc[:50]
    expected = served.model.predict(rows).tolist()
    split = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    assert _post(served.url + "/invocations", split) == (200, {"predictions": expected})
    records = {"dataframe_records": rows.to_dict(orient="records")}
    assert _post(served.url + "/invocations", records)[1]["predictions"] == expected
    version = served.uri.rsplit("/", 1)[1]
    tensor = {
        "name": "input-0",
        "shape": list(rows.shape),
        "datatype": "FP64",
        "data": rows.to_numpy().ravel().tolist(),
    }
    status, answer = _post(
        served.url + f"/v2/models/{MODEL}/infer",
        {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]},
    )
    assert status == 200 and answer["model_version"] == version
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predict"]["data"] == expected
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    assert np.array_equal(proba, served.model.predict_proba(rows))
    with urllib.request.urlopen(served.url + f"/v2/models/{MODEL}") as response:
        metadata = json.loads(response.read())
    assert [i["name"] for i in metadata["inputs"]] == list(served.frame.columns)


def test_bad_inputs_get_4xx_naming_the_problem(served: Served) -> None:
    columns = list(served.frame.columns)
    missing = {"dataframe_split": {"columns": columns[1:], "data": [[1.0] * 29]}}
    status, answer = _post(served.url + "/invocations", missing)
    assert status == 400 and f"missing column(s): {columns[0]}" in answer["error"]
    text = {"dataframe_split": {"columns": columns, "data": [["x", *[1.0] * 29]]}}
    status, answer = _post(served.url + "/invocations", text)
    assert status == 400 and repr(columns[0]) in answer["error"]
    shape = {"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP64", "data": [1.0] * 29}]}
    status, answer = _post(served.url + f"/v2/models/{MODEL}/infer", shape)
    assert status == 400 and "expected 30 values per row, got 29" in answer["error"]
    assert _post(served.url + "/v2/models/other/infer", shape)[0] == 404
    status, answer = _post(served.url + "/invocations", None, raw=b"x" * 300_000)
    assert status == 413 and "200000" in answer["error"]


def test_metrics_and_samples(served: Served, minio: services.Minio) -> None:
    rows = served.frame.iloc[:30]
    split = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    assert _post(served.url + "/invocations", split)[0] == 200
    with urllib.request.urlopen(served.url + "/metrics") as response:
        text = response.read().decode()
    version = served.uri.rsplit("/", 1)[1]
    labels = f'model="{MODEL}",version="{version}"'
    assert f'toque_serving_requests_total{{code="200",endpoint="invocations",{labels}}}' in text
    assert f'toque_serving_requests_total{{code="400",endpoint="invocations",{labels}}}' in text
    assert f'toque_serving_request_duration_seconds_bucket{{le="+Inf",{labels}}}' in text
    assert f'toque_serving_predictions_total{{class="1",{labels}}}' in text
    assert f'toque_serving_feature_value_bucket{{feature="mean radius",le="+Inf",{labels}}}' in text
    assert f'toque_serving_model_info{{digest="{served.digest}",{labels}}} 1.0' in text
    client = minio.client()
    prefix = f"serving-samples/default/{MODEL}/{version}/"  # no --sample-namespace
    deadline = time.monotonic() + 20
    keys: list[str] = []
    while not keys and time.monotonic() < deadline:
        keys = [
            o["Key"]
            for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        ]
        time.sleep(0.3)
    assert keys and keys[0].endswith(".parquet")
    import io

    sample = pd.read_parquet(
        io.BytesIO(client.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    )
    assert {"mean radius", "prediction", "timestamp"} <= set(sample.columns)


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["--expected-digest", "sha256:" + "0" * 64], "digest mismatch"),
        ([], "no expected digest"),
    ],
    ids=["mismatch", "no-digest"],
)
def test_unverifiable_models_exit_3_and_never_listen(
    served: Served, tmp_path: pathlib.Path, flags: list[str], reason: str
) -> None:
    log = tmp_path / "refused.log"
    url, proc = _start(
        served.env,
        log,
        "--model-uri",
        served.uri,
        "--model-name",
        MODEL,
        "--version",
        "1",
        *flags,
    )
    answered = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and not answered and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                answered = True
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == 3, log.read_text()[-2000:]
    assert not answered
    assert reason in log.read_text()


class Flaky:
    """A pyfunc model: fails on negative x, sleeps ``delay`` seconds."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        if (model_input["x"] < 0).any():
            raise ValueError("negative x")
        time.sleep(float(model_input["delay"].max()))
        return model_input["x"] * 2


def test_pyfunc_errors_are_500_with_a_request_id_and_sigterm_drains(
    served: Served, mlflow_server: services.Mlflow, minio: services.Minio, tmp_path: pathlib.Path
) -> None:
    import cloudpickle
    import mlflow

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    flaky = type("FlakyModel", (mlflow.pyfunc.PythonModel,), {"predict": Flaky.predict})
    example = pd.DataFrame({"x": [1.0], "delay": [0.0]})
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_URI", *minio.env()):
            patch.setenv(key, served.env[key])
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=flaky(),
                signature=mlflow.models.infer_signature(example, example["x"]),
            )
    log = tmp_path / "pyfunc.log"
    url, proc = _start(
        served.env,
        log,
        "--model-uri",
        info.model_uri,
        "--model-name",
        "flaky",
        "--version",
        "1",
        "--drain-seconds",
        "1",
        "--allow-unverified",
    )
    try:
        _wait_ready(url, proc, log)
        ok = _post(
            url + "/invocations",
            {"dataframe_split": {"columns": ["x", "delay"], "data": [[2.0, 0.0]]}},
        )
        assert ok == (200, {"predictions": [4.0]})
        status, answer = _post(url + "/invocations", {"inputs": {"x": [-1.0], "delay": [0.0]}})
        assert status == 500 and answer["error"] == "internal error"
        request_id = answer["request_id"]
        assert "negative x" not in json.dumps(answer)
        logged = log.read_text()
        assert f"request_id={request_id}" in logged and "negative x" in logged
        assert "without verifying" in logged
        with urllib.request.urlopen(url + "/metrics") as response:
            assert 'code="500",endpoint="invocations"' in response.read().decode()
        slow: list[Any] = []
        request = threading.Thread(
            target=lambda: slow.append(
                _post(url + "/invocations", {"inputs": {"x": [3.0], "delay": [2.0]}})
            )
        )
        request.start()
        time.sleep(0.3)
        proc.terminate()
        time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as unready:
            urllib.request.urlopen(url + "/readyz", timeout=5)
        assert unready.value.code == 503
        request.join(30)
        assert slow == [(200, {"predictions": [6.0]})]
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
