"""PyTorch and ONNX models take their fast paths and answer as their pyfunc flavours do.

Each test runs only where its runtime is installed (torch: the ``pytorch`` extra;
onnx + onnxruntime: not a dependency), and is skipped elsewhere. A small MLP on the
breast-cancer data (30 features) is saved with ``mlflow.pytorch``; a linear ONNX graph
(``MatMul`` + ``Add``) built with ``onnx.helper`` is saved with ``mlflow.onnx``. Their
answers on all 569 rows, through ``/invocations``, must equal pyfunc's within the float32
tolerance ``exact.RTOL``/``exact.ATOL``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.unit.test_serving_native import cancer_frames, post, serve
from toque.core import digest
from toque.serving import exact, model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


def _load(path: pathlib.Path) -> model.Predictor:
    return model.load(model.Fetched(path, digest.model_digest(path), None, {}, True, True))


def _answers(predictor: model.Predictor, frame: pd.DataFrame) -> Any:
    split = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    status, answer = post(serve(predictor), "/invocations", split)
    assert status == 200, answer
    return np.asarray(answer["predictions"])


def test_a_pytorch_mlp_is_called_under_inference_mode_and_answers_as_pyfunc(
    tmp_path: pathlib.Path,
) -> None:
    torch = pytest.importorskip("torch")
    import mlflow.pyfunc
    import mlflow.pytorch

    x, _, _ = cancer_frames()
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
    ).eval()
    scaled = (x - x.mean()) / x.std()
    with torch.no_grad():
        out = mlp(torch.from_numpy(scaled.to_numpy(np.float32))).numpy()
    path = tmp_path / "mlp"
    mlflow.pytorch.save_model(
        mlp,
        str(path),
        serialization_format="pickle",
        signature=mlflow.models.infer_signature(scaled, out),
    )
    predictor = _load(path)
    assert (predictor.path, predictor.input) == ("pytorch", "matrix")
    expected = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(scaled))
    got = _answers(predictor, scaled)
    assert got.shape == expected.shape == (569, 2)
    assert np.allclose(got, expected, rtol=exact.RTOL, atol=exact.ATOL)


def test_an_onnx_graph_runs_on_its_own_session_and_answers_as_pyfunc(
    tmp_path: pathlib.Path,
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import mlflow.onnx
    import mlflow.pyfunc
    from onnx import helper

    x, _, _ = cancer_frames()
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(30, 1)).astype(np.float32) / 100
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["score"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor("w", onnx.TensorProto.FLOAT, [30, 1], weights.ravel()),
            helper.make_tensor("b", onnx.TensorProto.FLOAT, [1], [0.5]),
        ],
    )
    graph_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    graph_model.ir_version = 8
    path = tmp_path / "linear"
    score = x.to_numpy(np.float32) @ weights + 0.5
    mlflow.onnx.save_model(
        graph_model, str(path), signature=mlflow.models.infer_signature(x, score)
    )
    predictor = _load(path)
    assert (predictor.path, predictor.input) == ("onnx", "matrix")
    expected = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(x)).reshape(-1)
    got = _answers(predictor, x)
    assert got.shape == (569,)
    assert np.allclose(got, expected, rtol=exact.RTOL, atol=exact.ATOL)
