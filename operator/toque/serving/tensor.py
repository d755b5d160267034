"""PyTorch and ONNX models called on the request's matrix, without pyfunc.

``Torch``: the ``mlflow.pytorch`` flavour's module (``get_raw_model()``), on the device
pyfunc loaded it to (CUDA when available, or ``MLFLOW_DEFAULT_PREDICTION_DEVICE``), called
on one float32 tensor under ``torch.inference_mode()``: pyfunc calls it the same way under
``no_grad`` with ``DataFrame.to_numpy(dtype=float32)``. ``Onnx``: the ``onnx`` flavour's own
ONNX Runtime session (``get_raw_model()``), fed the matrix as its single input (cast to the
input's element type: float64 becomes float32 for ``tensor(float)``, as pyfunc casts it),
answering its first output. Both are float32 runtimes: ``toque.serving.exact`` accepts them
within ``exact.RTOL``/``exact.ATOL`` of pyfunc's answer. Neither module imports its runtime
unless such a model is loaded: torch and onnxruntime are optional (the ``pytorch`` extra).
Built by ``toque.serving.model``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from toque.serving import runner

_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class Torch:
    kind = "pytorch"
    input = "matrix"
    float32 = True
    classes: npt.NDArray[Any] | None = None

    def __init__(self, module: Any, device: str) -> None:
        self.module = module
        self.device = device
        self._torch: Any = importlib.import_module("torch")  # optional: the pytorch extra

    def run(self, inputs: npt.NDArray[np.float64], proba: bool) -> runner.Output:
        torch = self._torch
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        with torch.inference_mode():
            result = self.module(torch.from_numpy(x).to(self.device))
            if not isinstance(result, torch.Tensor):
                raise TypeError(f"the model returned {type(result).__name__}, not one tensor")
            values = result.detach().to("cpu").numpy()
        return runner.Output(runner.plain_values(values), inputs=inputs)


class Onnx:
    kind = "onnx"
    input = "matrix"
    float32 = True
    classes: npt.NDArray[Any] | None = None

    def __init__(self, session: Any) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _ONNX_TYPES:
            raise ValueError("only models with one numeric input tensor have a fast path")
        self.session = session
        self.name = inputs[0].name
        self.dtype = _ONNX_TYPES[inputs[0].type]
        self.output = session.get_outputs()[0].name

    def run(self, inputs: npt.NDArray[np.float64], proba: bool) -> runner.Output:
        feed = {self.name: np.ascontiguousarray(inputs, dtype=self.dtype)}
        (values,) = self.session.run([self.output], feed)
        return runner.Output(runner.plain_values(values), inputs=inputs)


def torch_runner(pyfunc: Any) -> Torch:
    wrapper = pyfunc._model_impl  # mlflow.pytorch._PyTorchWrapper: the module and its device
    return Torch(pyfunc.get_raw_model(), str(getattr(wrapper, "device", "cpu")))


def onnx_runner(pyfunc: Any) -> Onnx:
    return Onnx(pyfunc.get_raw_model())
