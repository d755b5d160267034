"""The fast paths answer exactly what scikit-learn answers, on every breast-cancer row.

Four models on scikit-learn's breast-cancer data (569 rows), saved as the trainer saves
them (skops): a 50-tree forest (compiled), a StandardScaler + LogisticRegression Pipeline
(numpy, ``toque.serving.linear``), a HistGradientBoostingClassifier (compiled), and a
ColumnTransformer (one-hot string columns + scaling) + LogisticRegression on a mixed-type
frame (numpy, fed one vector per column). Each is loaded by ``model.load`` and asked
through the in-process ASGI app: /invocations (dataframe_split, dataframe_records) and v2
infer (one tensor, one tensor per column). A fast path that answers otherwise than pyfunc
is refused.

Probabilities are compared with ``predict_proba`` of the DataFrame a request body makes
(built column by column, as pyfunc's is): a linear model's BLAS dot products round the last
bit differently for a row-major array, such as ``load_breast_cancer``'s own frame holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pathlib
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from toque.core import digest
from toque.serving import app, exact, linear, metrics, model, native, runner, signature

# MLflow's own warnings while saving; scikit-learn's about a matrix without column names.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
PATHS = {
    "forest": ("forest", "matrix", exact.EXACT),
    # BLAS: the final logistic regression's answers depend on the batch, not the transforms'.
    # Scalers, one-hot encoding and a logistic regression: numpy (toque.serving.linear).
    "pipeline": ("linear", "matrix", exact.TRANSFORMS),
    "hgb": ("boosted", "matrix", exact.EXACT),
    "columns": ("linear", "columns", exact.TRANSFORMS),
}


@dataclasses.dataclass
class Saved:
    path: pathlib.Path
    digest: str
    model: Any
    frame: pd.DataFrame


def cancer_frames() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """The 30 numeric features; the same with two of them as string categories; labels."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    mixed = x.drop(columns=["mean radius", "mean texture"])
    mixed["size"] = np.select(
        [x["mean radius"] < 12, x["mean radius"] < 16], ["small", "medium"], "large"
    )
    mixed["texture band"] = np.where(x["mean texture"] > 19, "rough", "smooth")
    return x, mixed, y


def cancer_models() -> dict[str, tuple[Any, pd.DataFrame]]:
    from sklearn import compose, ensemble, linear_model, pipeline, preprocessing

    x, mixed, y = cancer_frames()
    numeric = [c for c in mixed.columns if mixed[c].dtype.kind == "f"]
    encode = compose.ColumnTransformer(
        [
            ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["size", "texture band"]),
            ("num", preprocessing.StandardScaler(), numeric),
        ]
    )
    return {
        "forest": (ensemble.RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y), x),
        "pipeline": (
            pipeline.make_pipeline(
                preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=5000)
            ).fit(x, y),
            x,
        ),
        "hgb": (ensemble.HistGradientBoostingClassifier(random_state=0).fit(x, y), x),
        "columns": (
            pipeline.Pipeline(
                [("encode", encode), ("classify", linear_model.LogisticRegression(max_iter=5000))]
            ).fit(mixed, y),
            mixed,
        ),
    }


def save(fitted: Any, frame: pd.DataFrame, path: pathlib.Path) -> Saved:
    import mlflow
    import skops.io

    mlflow.sklearn.save_model(
        fitted,
        str(path),
        serialization_format="skops",
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(fitted)),
        signature=mlflow.models.infer_signature(frame, fitted.predict(frame)),
    )
    return Saved(path, digest.model_digest(path), fitted, frame)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    root = tmp_path_factory.mktemp("cancer")
    return {name: save(m, f, root / name) for name, (m, f) in cancer_models().items()}


def load(item: Saved, sample: pd.DataFrame | None = None) -> model.Predictor:
    return model.load(
        model.Fetched(item.path, item.digest, None, {}, True, trusted=True, sample=sample)
    )


@pytest.fixture(scope="module")
def predictors(saved: dict[str, Saved]) -> dict[str, model.Predictor]:
    return {name: load(item) for name, item in saved.items()}


def serve(predictor: model.Predictor, **settings: Any) -> app.App:
    served = app.App(
        app.Settings(
            model_name="m", version="1", digest="sha256:" + "0" * 64, sample_rate=0, **settings
        ),
        predictor,
        {},
    )
    return served


async def call(served: app.App, path: str, document: Any) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": orjson.dumps(document), "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await served(scope, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def post(served: app.App, path: str, document: Any) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        served.startup()
        try:
            return await call(served, path, document)
        finally:
            served.shutdown()

    return asyncio.run(go())


def as_request(frame: pd.DataFrame) -> pd.DataFrame:
    """The DataFrame a server builds of a request body: column by column (column-major)."""
    return pd.DataFrame({c: frame[c].tolist() for c in frame.columns})


def per_column(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": str(c),
            "shape": [len(frame)],
            "datatype": "FP64" if frame[c].dtype.kind == "f" else "BYTES",
            "data": frame[c].tolist(),
        }
        for c in frame.columns
    ]


@pytest.mark.parametrize("name", list(PATHS))
def test_each_model_takes_its_fast_path(predictors: dict[str, model.Predictor], name: str) -> None:
    predictor = predictors[name]
    assert (predictor.path, predictor.input, predictor.batching) == PATHS[name]
    assert predictor.pyfunc is None  # one copy of the model: the fast path's


@pytest.mark.parametrize("name", list(PATHS))
def test_invocations_answer_sklearns_predictions_on_all_569_rows(
    saved: dict[str, Saved], predictors: dict[str, model.Predictor], name: str
) -> None:
    item = saved[name]
    expected = item.model.predict(item.frame).tolist()
    split = {"dataframe_split": json.loads(item.frame.to_json(orient="split", index=False))}
    assert post(serve(predictors[name]), "/invocations", split) == (
        200,
        {"predictions": expected},
    )
    records = {"dataframe_records": item.frame.to_dict(orient="records")}
    assert post(serve(predictors[name]), "/invocations", records) == (
        200,
        {"predictions": expected},
    )


@pytest.mark.parametrize("name", list(PATHS))
def test_infer_answers_sklearns_labels_and_probabilities_on_all_569_rows(
    saved: dict[str, Saved], predictors: dict[str, model.Predictor], name: str
) -> None:
    item = saved[name]
    expected = item.model.predict(item.frame).tolist()
    assert item.model.predict(as_request(item.frame)).tolist() == expected
    proba = item.model.predict_proba(as_request(item.frame))
    documents = [per_column(item.frame)]
    if name != "columns":  # one FP64 tensor: numeric models only
        documents.append(
            [
                {
                    "name": "input-0",
                    "shape": list(item.frame.shape),
                    "datatype": "FP64",
                    "data": item.frame.to_numpy().ravel().tolist(),
                }
            ]
        )
    for inputs in documents:
        status, answer = post(
            serve(predictors[name]),
            "/v2/models/m/infer",
            {"inputs": inputs, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]},
        )
        assert status == 200, answer
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["predict"]["data"] == expected
        got = np.asarray(outputs["predict_proba"]["data"]).reshape(proba.shape)
        assert np.array_equal(got, proba)


def test_the_fast_path_reports_itself_in_the_metrics(
    predictors: dict[str, model.Predictor],
) -> None:
    text = serve(predictors["columns"]).registry
    from prometheus_client import exposition

    rendered = exposition.generate_latest(text).decode()
    assert 'toque_serving_fast_path{model="m",path="linear",reason="",version="1"} 1.0' in rendered
    assert 'toque_serving_batch_max_rows{model="m",version="1"} 1024.0' in rendered


def test_a_fast_path_that_answers_otherwise_is_refused_for_pyfunc(
    saved: dict[str, Saved], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def off_by_one_row(honest: Any) -> Any:
        def run(self: Any, inputs: Any, proba: bool) -> runner.Output:
            out: runner.Output = honest(self, inputs, proba)
            out.values = out.values.copy()
            out.values[0] = 1 - out.values[0]
            return out

        return run

    for kind in (native.Sklearn, linear.Linear):
        monkeypatch.setattr(kind, "run", off_by_one_row(kind.run))
    with caplog.at_level(logging.INFO, logger="toque.serve"):
        predictor = load(saved["pipeline"])
    assert (predictor.path, predictor.fallback) == ("pyfunc", "refused")
    assert (
        "serving through mlflow.pyfunc (linear: predictions differ from pyfunc's; "
        "sklearn: predictions differ" in caplog.text
    )
    item = saved["pipeline"]
    split = {"dataframe_split": json.loads(item.frame.to_json(orient="split", index=False))}
    served = serve(predictor)
    assert post(served, "/invocations", split)[1]["predictions"] == (
        item.model.predict(item.frame).tolist()
    )
    from prometheus_client import exposition

    rendered = exposition.generate_latest(served.registry).decode()
    assert 'path="pyfunc",reason="refused"' in rendered


class Halver:
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input["x"] / 2


def test_a_model_without_a_fast_path_is_served_by_pyfunc_and_says_why(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    frame = pd.DataFrame({"x": [1.0, 3.0]})
    python_model = type("HalverModel", (mlflow.pyfunc.PythonModel,), {"predict": Halver.predict})
    mlflow.pyfunc.save_model(
        str(tmp_path / "m"),
        python_model=python_model(),
        signature=mlflow.models.infer_signature(frame, frame["x"]),
    )
    path = tmp_path / "m"
    with caplog.at_level(logging.INFO, logger="toque.serve"):
        predictor = model.load(model.Fetched(path, digest.model_digest(path), None, {}, True, True))
    assert (predictor.path, predictor.fallback, predictor.input) == (
        "pyfunc",
        "unsupported",
        "frame",
    )
    assert "serving through mlflow.pyfunc (no fast path for python_function)" in caplog.text
    status, answer = post(
        serve(predictor), "/invocations", {"dataframe_split": {"columns": ["x"], "data": [[3.0]]}}
    )
    assert (status, answer) == (200, {"predictions": [1.5]})


def test_the_check_compares_on_the_trainers_validation_sample(
    saved: dict[str, Saved], caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow.pyfunc

    item = saved["columns"]
    sample = item.frame.head(20).assign(**{exact.PREDICTION: item.model.predict(item.frame)[:20]})
    pyfunc = mlflow.pyfunc.load_model(str(item.path))
    schema = signature.from_mlmodel(signature.read_mlmodel(item.path))
    assert schema is not None
    fast = native.Sklearn(pyfunc.get_raw_model(), schema)
    verdict = exact.check(fast, pyfunc, pyfunc.get_raw_model(), schema, sample, {})
    assert (verdict.ok, verdict.rows) == (True, 20)
    # Predictions the trainer logged that this environment does not reproduce: a warning.
    flipped = sample.assign(**{exact.PREDICTION: 1 - sample[exact.PREDICTION]})
    with caplog.at_level(logging.WARNING, logger="toque.serve"):
        assert exact.check(fast, pyfunc, pyfunc.get_raw_model(), schema, flipped, {}).ok
    assert "differently here than in training" in caplog.text


def test_rows_made_from_feature_bins_use_their_edges_and_categories() -> None:
    schema = signature.Schema(
        (
            signature.Column("a", "double"),
            signature.Column("n", "long"),
            signature.Column("s", "string"),
        ),
        3,
    )
    bins = {
        "a": {"kind": "numeric", "edges": [0.0, 10.0]},
        "n": {"kind": "numeric", "edges": [1.0, 3.0]},
        "s": {"kind": "categorical", "categories": ["x", "y"]},
    }
    rows = exact.check_rows(schema, None, bins)
    assert rows[0] == [0.0, 1, "x"] and rows[-1] == [10.0, 3, "y"]
    assert {type(r[1]) for r in rows} == {int}


def test_matrix_dtype_is_what_sklearn_makes_of_pyfuncs_frame() -> None:
    def schema(*types: str) -> signature.Schema:
        return signature.Schema(
            tuple(signature.Column(f"c{i}", t) for i, t in enumerate(types)), len(types)
        )

    assert native.matrix_layout(schema("long", "long"))[0] == np.int64
    assert native.matrix_layout(schema("long", "double"))[0] == np.float64
    assert native.matrix_layout(schema("float", "float"))[0] == np.float32
    assert native.matrix_layout(schema("boolean", "long"))[0] == np.float64
    dtype, float32 = native.matrix_layout(schema("float", "double"))
    assert dtype == np.float64 and float32.tolist() == [0]


def test_a_float_column_is_rounded_to_float32_as_pyfunc_casts_it() -> None:
    from sklearn.linear_model import LinearRegression

    schema = signature.Schema((signature.Column("a", "float"), signature.Column("b", "double")), 2)
    fitted = LinearRegression().fit(np.eye(2), [0.0, 1.0])
    x = np.asarray([[0.1, 0.1]])
    matrix = native.Sklearn(fitted, schema).model_input(x)
    assert matrix[0, 0] == float(np.float32(0.1)) and matrix[0, 1] == 0.1
    assert matrix.flags.f_contiguous


def test_steps_that_may_select_columns_by_name_get_a_dataframe() -> None:
    from sklearn import pipeline, preprocessing
    from sklearn.linear_model import LogisticRegression

    schema = signature.from_names(["a", "b"])
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    plain = pipeline.make_pipeline(preprocessing.StandardScaler(), LogisticRegression())
    picky = pipeline.make_pipeline(
        preprocessing.FunctionTransformer(lambda f: f[["a"]]), LogisticRegression()
    )
    for fitted in (plain, picky):
        fitted.fit(frame, [0, 1, 0, 1])
    assert native.needs_frame(plain.fit(frame, [0, 1, 0, 1]), schema) is False
    assert native.needs_frame(picky, schema) is True
    reordered = signature.from_names(["b", "a"])
    assert native.needs_frame(plain, reordered) is True  # names must line up with the matrix


def test_a_pipeline_is_split_into_its_transforms_and_final_estimator() -> None:
    from sklearn import pipeline, preprocessing
    from sklearn.linear_model import LogisticRegression

    scale, classify = preprocessing.StandardScaler(), LogisticRegression()
    head, tail = native.split(
        pipeline.Pipeline([("s", scale), ("p", "passthrough"), ("c", classify)])
    )
    assert head == [scale] and tail is classify
    assert native.split(classify) == ([], classify)


def test_batch_rows_and_waits_are_counted() -> None:
    layout = metrics.Layout("m", "1", "sha256:x", [], [], None, None, batch_max_rows=64)
    counts = metrics.Metrics(layout)
    counts.dispatched(8, [0.0001, 0.0003])
    counts.dispatched(1, [0.0])
    total = counts.total()
    assert sum(total.batch_rows) == 2 and total.batch_rows_sum == 9
    assert total.batch_rows[metrics.BATCH_ROWS_BUCKETS.index(8)] == 1
    assert sum(total.batch_wait) == 3


class Recorder:
    """An MlflowClient that keeps the paths it is asked to log."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, str]] = []

    def log_artifact(self, run_id: str, path: str, artifact_path: str) -> None:
        self.logged.append((path, artifact_path))


def test_the_trainers_validation_sample_is_what_the_servers_check_compares_on(
    saved: dict[str, Saved], tmp_path: pathlib.Path
) -> None:
    import mlflow.pyfunc

    from toque.trainer import context
    from toque.trainer import run as trainer

    item = saved["columns"]
    validation = item.frame.assign(label=item.model.predict(item.frame))
    client = Recorder()
    trainer._log_validation_sample(
        client,
        "run",
        context.Result(item.model, validation=validation, label_column="label"),
        tmp_path,
    )
    ((path, artifact_dir),) = client.logged
    assert f"{artifact_dir}/{pathlib.Path(path).name}" == model.SAMPLE_PATH
    sample = pd.read_parquet(path)
    assert len(sample) == exact.MAX_ROWS and exact.PREDICTION in sample
    pyfunc = mlflow.pyfunc.load_model(str(item.path))
    schema = signature.from_mlmodel(signature.read_mlmodel(item.path))
    assert schema is not None
    fast = native.Sklearn(pyfunc.get_raw_model(), schema)
    verdict = exact.check(fast, pyfunc, pyfunc.get_raw_model(), schema, sample, {})
    assert (verdict.ok, verdict.rows) == (True, exact.MAX_ROWS)
