"""Confidence, bias and feedback metrics of ``toque serve``, against real processes, and
what the drift monitor's queries read of them through a real Prometheus.

Two servers share the module: the compiled breast-cancer forest (integer classes) and a
pyfunc scikit-learn Pipeline (one-hot ``channel`` string column + LogisticRegression, string
classes) whose probabilities come from its estimator's ``predict_proba``. Every count is
checked as a difference of two scrapes, against what scikit-learn says of the same rows. A
regressor's feedback (absolute and squared errors) is checked in-process.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import json
import pathlib
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import parser

from tests.integration import test_serving_server as base
from toque.clients import prometheus as prom
from toque.core import bins, digest
from toque.local import cluster as local
from toque.local import services
from toque.reconcile import driftqueries
from toque.serving import app, model, signature
from toque.serving import bins as serving_bins

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
PIPELINE = "serve-churn"
BUCKET = "serving-feedback-test"
CHANNELS = ["web", "store", "phone"]


@dataclasses.dataclass
class Server:
    url: str
    name: str
    version: str
    model: Any
    frame: pd.DataFrame  # model inputs
    labels: Any  # true labels of ``frame``
    uri: str = ""  # the registered model, to start another server of it
    digest: str = ""

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url + "/metrics") as response:
            text = response.read().decode()
        out = {}
        for family in parser.text_string_to_metric_families(text):
            for s in family.samples:
                labels = {k: v for k, v in s.labels.items() if k not in ("model", "version")}
                out[(s.name, tuple(sorted(labels.items())))] = s.value
        return out

    def infer(self, rows: pd.DataFrame, outputs: list[str] | None = None) -> tuple[int, Any]:
        document: dict[str, Any] = {"inputs": _tensors(rows)}
        if outputs:
            document["outputs"] = [{"name": o} for o in outputs]
        return base._post(f"{self.url}/v2/models/{self.name}/infer", document)

    def feedback(self, rows: pd.DataFrame, labels: list[Any]) -> tuple[int, Any]:
        document = {"inputs": _tensors(rows), "labels": labels}
        return base._post(f"{self.url}/v2/models/{self.name}/feedback", document)


def _tensors(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": str(c),
            "shape": [len(rows)],
            "datatype": "BYTES" if rows[c].dtype == object else "FP64",
            "data": rows[c].tolist(),
        }
        for c in rows.columns
    ]


def _delta(
    after: dict[Any, float], before: dict[Any, float], name: str
) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        labels: value - before.get((n, labels), 0.0)
        for (n, labels), value in after.items()
        if n == name and value != before.get((n, labels), 0.0)
    }


def _churn_data(rows: int, seed: int) -> tuple[pd.DataFrame, Any]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "channel": rng.choice(CHANNELS, rows, p=[0.5, 0.3, 0.2]),
            "amount": rng.normal(50, 10, rows).round(2),
            "tenure": rng.integers(1, 60, rows).astype(float),
        }
    )
    score = frame["amount"] - 0.3 * frame["tenure"] + 8 * (frame["channel"] == "web")
    labels = np.where(score + rng.normal(0, 6, rows) > 45, "churn", "stay")
    return frame, labels


def _log_pipeline(workdir: pathlib.Path) -> tuple[Any, pd.DataFrame, Any, str, str]:
    import mlflow
    import skops.io
    from sklearn import compose, linear_model, pipeline, preprocessing

    frame, labels = _churn_data(3000, 0)
    encode = compose.ColumnTransformer(
        [("channel", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["channel"])],
        remainder="passthrough",
    )
    fitted = pipeline.Pipeline(
        [("encode", encode), ("classify", linear_model.LogisticRegression(max_iter=1000))]
    ).fit(frame, labels)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            registered_model_name=PIPELINE,
            signature=mlflow.models.infer_signature(frame, fitted.predict(frame)),
            skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(fitted)),
        )
        serving_bins.log_bins(frame, run.info.run_id, workdir, fitted, labels)
    uri = f"models:/{PIPELINE}/{info.registered_model_version}"
    local_dir = mlflow.artifacts.download_artifacts(uri, dst_path=str(workdir / "check"))
    return fitted, frame, labels, uri, digest.model_digest(pathlib.Path(local_dir))


def _serve(
    env: dict[str, str], log: pathlib.Path, uri: str, name: str, model_digest: str, *extra: str
) -> tuple[str, Any]:
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
        *extra,
    )
    base._wait_ready(url, proc, log)
    return url, proc


@pytest.fixture(scope="module")
def servers(
    mlflow_server: services.Mlflow, minio: services.Minio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    workdir = tmp_path_factory.mktemp("feedback")
    env = base._env(mlflow_server, minio)
    minio.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_URI", *minio.env()):
            patch.setenv(key, env[key])
        forest, cancer, forest_uri, forest_digest = base._log_forest(env, workdir)
        churn, frame, labels, churn_uri, churn_digest = _log_pipeline(workdir)
    from sklearn.datasets import load_breast_cancer

    cancer_labels = load_breast_cancer().target
    procs = []
    try:
        url, proc = _serve(env, workdir / "forest.log", forest_uri, base.MODEL, forest_digest)
        procs.append(proc)
        forest_server = Server(
            url, base.MODEL, forest_uri.rsplit("/", 1)[1], forest, cancer, cancer_labels
        )
        url, proc = _serve(
            env,
            workdir / "pipeline.log",
            churn_uri,
            PIPELINE,
            churn_digest,
            "--sample-rate",
            "1",
            "--sample-bucket",
            BUCKET,
        )
        procs.append(proc)
        pipeline_server = Server(
            url,
            PIPELINE,
            churn_uri.rsplit("/", 1)[1],
            churn,
            frame,
            labels,
            churn_uri,
            churn_digest,
        )
        yield {"forest": forest_server, "pipeline": pipeline_server}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def test_pyfunc_pipeline_answers_predict_proba_as_sklearn(servers: dict[str, Server]) -> None:
    server = servers["pipeline"]
    rows, _ = _churn_data(40, 1)
    status, answer = server.infer(rows, ["predict", "predict_proba"])
    assert status == 200, answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["predict"]["data"] == server.model.predict(rows).tolist()
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    assert np.array_equal(proba, server.model.predict_proba(rows))
    with urllib.request.urlopen(f"{server.url}/v2/models/{PIPELINE}") as response:
        metadata = json.loads(response.read())
    assert {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]} in metadata["outputs"]


@pytest.mark.parametrize("which", ["forest", "pipeline"])
def test_confidence_histogram_counts_each_rows_top_probability(
    servers: dict[str, Server], which: str
) -> None:
    server = servers[which]
    rows = server.frame.iloc[100:160]
    before = server.metrics()
    assert server.infer(rows)[0] == 200
    assert server.infer(rows.iloc[:7])[0] == 200
    after = server.metrics()
    top = np.concatenate(
        [
            server.model.predict_proba(rows).max(axis=1),
            server.model.predict_proba(rows.iloc[:7]).max(axis=1),
        ]
    )
    buckets = _delta(after, before, "toque_serving_prediction_confidence_bucket")
    for edge in bins.CONFIDENCE_EDGES:
        le = (("le", str(edge)),)
        assert buckets.get(le, 0.0) == (top <= edge).sum(), edge
    assert buckets[(("le", "+Inf"),)] == 67
    count = _delta(after, before, "toque_serving_prediction_confidence_count")
    assert count == {(): 67}


def test_feedback_moves_the_confusion_matrix_by_exactly_those_rows(
    servers: dict[str, Server],
) -> None:
    server = servers["pipeline"]
    rows, _ = _churn_data(50, 2)
    rows.loc[rows.index[:5], "channel"] = "kiosk"  # not seen in training: group __other__
    predicted = server.model.predict(rows)
    flip = {"churn": "stay", "stay": "churn"}
    actual = [p if i % 3 else flip[p] for i, p in enumerate(predicted)]  # a third wrong
    before = server.metrics()
    status, answer = server.feedback(rows, actual)
    assert (status, answer) == (
        200,
        {"model_name": PIPELINE, "model_version": server.version, "rows": 50},
    )
    after = server.metrics()
    expected = collections.Counter(zip(actual, predicted.tolist(), strict=True))
    confusion = _delta(after, before, "toque_serving_feedback_total")
    assert confusion == {
        (("actual", a), ("predicted", p)): float(n) for (a, p), n in expected.items()
    }
    assert _delta(after, before, "toque_serving_feedback_rows_total") == {(): 50.0}
    group = [g if g in CHANNELS else "__other__" for g in rows["channel"]]
    expected_groups = collections.Counter(zip(group, actual, predicted.tolist(), strict=True))
    assert _delta(after, before, "toque_serving_feedback_group_total") == {
        (("actual", a), ("feature", "channel"), ("group", g), ("predicted", p)): float(n)
        for (g, a, p), n in expected_groups.items()
    }
    # Feedback is not traffic: no predicted rows, classes, histograms or latency.
    for name in (
        "toque_serving_rows_total",
        "toque_serving_predictions_total",
        "toque_serving_group_predictions_total",
        "toque_serving_prediction_confidence_count",
        "toque_serving_request_duration_seconds_count",
    ):
        assert _delta(after, before, name) == {}, name
    requests = _delta(after, before, "toque_serving_requests_total")
    assert requests == {(("code", "200"), ("endpoint", "feedback")): 1.0}


def test_feedback_of_the_forest_under_the_versions_route(servers: dict[str, Server]) -> None:
    server = servers["forest"]
    rows = server.frame.iloc[:30]
    actual = server.labels[:30].tolist()
    before = server.metrics()
    url = f"{server.url}/v2/models/{server.name}/versions/{server.version}/feedback"
    status, _ = base._post(url, {"inputs": _tensors(rows), "labels": actual})
    assert status == 200
    after = server.metrics()
    expected = collections.Counter(
        zip(map(str, actual), map(str, server.model.predict(rows).tolist()), strict=True)
    )
    assert _delta(after, before, "toque_serving_feedback_total") == {
        (("actual", a), ("predicted", p)): float(n) for (a, p), n in expected.items()
    }


def test_group_predictions_count_every_predicted_row_per_category(
    servers: dict[str, Server],
) -> None:
    server = servers["pipeline"]
    rows, _ = _churn_data(80, 3)
    rows.loc[rows.index[:4], "channel"] = "kiosk"
    before = server.metrics()
    assert server.infer(rows)[0] == 200
    after = server.metrics()
    group = [g if g in CHANNELS else "__other__" for g in rows["channel"]]
    expected = collections.Counter(zip(group, server.model.predict(rows).tolist(), strict=True))
    assert _delta(after, before, "toque_serving_group_predictions_total") == {
        (("class", c), ("feature", "channel"), ("group", g)): float(n)
        for (g, c), n in expected.items()
    }


BAD_FEEDBACK: dict[str, tuple[dict[str, Any] | bytes, int, str]] = {
    "labels-missing": ({"inputs": "ROWS"}, 400, "labels are missing"),
    "labels-not-a-list": ({"inputs": "ROWS", "labels": "churn"}, 400, "labels must be a list"),
    "too-few-labels": ({"inputs": "ROWS", "labels": ["churn"]}, 400, "1 label(s) for 3 row(s)"),
    "unknown-class": (
        {"inputs": "ROWS", "labels": ["churn", "maybe", "stay"]},
        400,
        "label 'maybe' in row 1 is not one of the model's classes ['churn', 'stay']",
    ),
    "number-for-string-classes": (
        {"inputs": "ROWS", "labels": ["churn", "stay", 1]},
        400,
        "label 1 in row 2 is a number; this model's classes are strings",
    ),
    "null-label": ({"inputs": "ROWS", "labels": ["churn", None, "stay"]}, 400, "row 1"),
    "bad-inputs": (
        {
            "inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}],
            "labels": ["churn"],
        },
        400,
        "missing column(s): channel, tenure",
    ),
    "invalid-json": (b'{"inputs": [', 400, "not valid JSON"),
    "wrong-content-type": (b"channel=web", 415, "content type text/plain is not supported"),
}


@pytest.mark.parametrize("case", list(BAD_FEEDBACK), ids=list(BAD_FEEDBACK))
def test_bad_feedback_bodies_are_rejected_by_name_and_count_nothing(
    servers: dict[str, Server], case: str
) -> None:
    server = servers["pipeline"]
    body, code, message = BAD_FEEDBACK[case]
    rows, _ = _churn_data(3, 4)
    if isinstance(body, dict):
        raw = json.dumps({**body, "inputs": _tensors(rows)} if body["inputs"] == "ROWS" else body)
        data = raw.encode()
    else:
        assert isinstance(body, bytes)
        data = body
    content_type = "text/plain" if case == "wrong-content-type" else "application/json"
    before = server.metrics()
    request = urllib.request.Request(
        f"{server.url}/v2/models/{PIPELINE}/feedback", data, {"content-type": content_type}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == code
    assert message in json.loads(error.value.read())["error"]
    after = server.metrics()
    for name in (
        "toque_serving_feedback_rows_total",
        "toque_serving_feedback_total",
        "toque_serving_feedback_group_total",
        "toque_serving_rows_total",
    ):
        assert _delta(after, before, name) == {}, name


def test_feedback_for_an_unknown_model_is_404_and_a_string_for_int_classes_400(
    servers: dict[str, Server],
) -> None:
    server = servers["forest"]
    rows = server.frame.iloc[:2]
    document = {"inputs": _tensors(rows), "labels": [0, 1]}
    status, answer = base._post(f"{server.url}/v2/models/other/feedback", document)
    assert status == 404
    status, answer = base._post(
        f"{server.url}/v2/models/{server.name}/feedback", {**document, "labels": ["0", 1]}
    )
    assert status == 400
    assert (
        answer["error"]
        == "label '0' in row 0 is a string; this model's classes are numbers: [0, 1]"
    )


def test_feedback_rows_are_sampled_with_labels_apart_from_inference_samples(
    servers: dict[str, Server], minio: services.Minio
) -> None:
    server = servers["pipeline"]
    rows, _ = _churn_data(6, 5)
    actual = ["churn", "stay"] * 3
    assert server.feedback(rows, actual)[0] == 200
    assert server.infer(rows)[0] == 200
    client = minio.client()
    root = f"serving-samples/default/{PIPELINE}/{server.version}/"  # no --sample-namespace
    deadline = time.monotonic() + 20
    frames: dict[str, list[pd.DataFrame]] = {}
    while time.monotonic() < deadline:
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=root).get("Contents", [])
        frames = {"feedback": [], "inference": []}
        for item in listed:
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            kind = "feedback" if item["Key"].startswith(root + "feedback/") else "inference"
            frames[kind].append(pd.read_parquet(io.BytesIO(body)))
        if any("label" in f and len(f) == 6 for f in frames["feedback"]) and frames["inference"]:
            break
        time.sleep(0.3)
    feedback = next(f for f in frames["feedback"] if len(f) == 6)
    assert feedback["label"].tolist() == actual
    assert feedback["prediction"].tolist() == server.model.predict(rows).tolist()
    assert (
        feedback[["channel", "amount"]].values.tolist()
        == rows[["channel", "amount"]].values.tolist()
    )
    assert all("label" not in f.columns for f in frames["inference"])


class Doubler:
    """A pyfunc-style regressor: predicts twice ``x``."""

    def predict(self, frame: pd.DataFrame) -> Any:
        return frame["x"].to_numpy() * 2.0


def _post_in_process(served: app.App, path: str, document: Any) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": orjson.dumps(document), "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await served(scope, receive, send)
        return sent[0]["status"], orjson.loads(sent[1]["body"])

    return asyncio.run(go())


def test_regressor_feedback_sums_absolute_and_squared_errors() -> None:
    served = app.App(
        app.Settings(model_name="m", version="1", digest="sha256:" + "0" * 64, sample_rate=0),
        model.Predictor(signature.from_names(["x"]), None, Doubler()),
        {},
    )
    served.startup()
    try:
        tensor = {"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
        status, answer = _post_in_process(
            served, "/v2/models/m/feedback", {"inputs": [tensor], "labels": [2.0, 5.0, 6.5]}
        )
        assert (status, answer["rows"]) == (200, 3)
        status, answer = _post_in_process(
            served, "/v2/models/m/feedback", {"inputs": [tensor], "labels": [2.0, "5", 6.5]}
        )
        assert status == 400 and "label '5' in row 1" in answer["error"]
    finally:
        served.shutdown()
    counts = served.metrics.total()
    assert counts.feedback_rows == 3
    assert counts.feedback_abs_error == 0.0 + 1.0 + 0.5
    assert counts.feedback_squared_error == 0.0 + 1.0 + 0.25


def test_a_drift_window_from_before_the_first_request_counts_a_class_for_every_row(
    servers: dict[str, Server],
    mlflow_server: services.Mlflow,
    minio: services.Minio,
    tmp_path: pathlib.Path,
) -> None:
    """The drift monitor's queries, through a real Prometheus scraping a fresh server, over a
    window that begins while the server is idle: the predicted classes and the per-group
    predictions add up to the rows. A class series first exposed with its first rows loses
    those rows to increase(), which read as rows without a prediction: output drift on
    calm traffic."""
    pipeline = servers["pipeline"]
    url, proc = _serve(
        base._env(mlflow_server, minio),
        tmp_path / "fresh.log",
        pipeline.uri,
        PIPELINE,
        pipeline.digest,
    )
    (tmp_path / "prometheus").mkdir()
    prometheus = services.Prometheus(
        workdir=tmp_path / "prometheus",
        binary=local.find_binaries(("prometheus",))["prometheus"],
        static_targets=((url.removeprefix("http://"), (("namespace", "drift-window"),)),),
    )
    began = time.monotonic()
    prometheus.start()
    try:
        client = prom.Prometheus(prometheus.url, timeout=5)
        idle = 'count_over_time(toque_serving_rows_total{namespace="drift-window"}[30s])'
        deadline = time.monotonic() + 60
        while (client.scalar(f"sum({idle})") or 0) < 3:  # the idle server, scraped 3 times
            assert time.monotonic() < deadline, "Prometheus never scraped the server"
            time.sleep(0.5)
        rows, _ = _churn_data(40, 7)
        sent = 0
        for _ in range(25):
            status, answer = base._post(
                f"{url}/v2/models/{PIPELINE}/infer", {"inputs": _tensors(rows)}
            )
            assert status == 200, answer
            sent += len(rows)
            time.sleep(0.2)
        time.sleep(3)  # every row scraped
        target = driftqueries.Target(
            "drift-window",
            PIPELINE,
            pipeline.version,
            window_seconds=int(time.monotonic() - began) + 2,
            bias_feature="channel",
        )
        now = time.time()
        answers = {
            name: client.query(query, time=now)
            for name, query in driftqueries.queries(target).items()
        }
    finally:
        prometheus.stop()
        proc.terminate()
        proc.wait(30)

    def total(name: str) -> float:
        return sum(s.value for s in answers[name])

    counted = total(driftqueries.ROWS)
    assert counted == pytest.approx(sent, rel=0.1)  # increase() extrapolates a little
    assert total(driftqueries.CLASSES) == pytest.approx(counted, rel=0.01), answers
    assert total(driftqueries.GROUP_PREDICTIONS) == pytest.approx(counted, rel=0.01), answers
