"""The models of the serving benchmark, fitted, logged to MLflow and laid out for MLServer.

Five classifiers on scikit-learn's breast-cancer data (569 rows, 30 numeric features): a
50-tree random forest, a StandardScaler + LogisticRegression pipeline, a
HistGradientBoostingClassifier, a ColumnTransformer (one-hot strings, scaled numbers) +
LogisticRegression on the same rows plus three seeded string columns, and a small PyTorch
MLP (when torch imports). Each is fitted on a DataFrame, logged and registered in the
caller's MLflow the way Toque's trainer logs a model (scikit-learn through skops with only
scikit-learn's own types trusted; PyTorch as a pickled module), and given a directory
MLServer can load: ``model.joblib`` of the very same fitted estimator for the scikit-learn
runtime, or the downloaded MLflow model for the MLflow runtime. ``Model.reference`` holds
the model's own predictions on every row, which every server must reproduce. Called by
``bench/serve.py``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
import pandas as pd

ROWS_SEED = 0
# Synthetic string columns: name → categories; each leans on the label a little, so the
# one-hot part of the mixed model carries weight.
STRINGS = {
    "region": ["north", "south", "east", "west"],
    "channel": ["web", "store", "phone"],
    "plan": ["free", "basic", "pro", "team", "enterprise"],
}
# Float32 runtimes (PyTorch) may round differently with the batch size: the tolerance the
# MLP's predicted probabilities are checked with, absolute.
TORCH_ATOL = 1e-5


@dataclasses.dataclass
class Model:
    key: str  # short name in tables and in the registered name ``bench-<key>``
    title: str  # what the results table calls it
    frame: pd.DataFrame  # every row the checks send, in the model's column order
    reference: np.ndarray  # the model's own predictions on ``frame``
    uri: str = ""  # models:/bench-<key>/1
    digest: str = ""  # toque.core.digest.model_digest of the logged model
    local: pathlib.Path | None = None  # the downloaded MLflow model directory
    mlserver_dir: pathlib.Path | None = None  # what ``mlserver start`` is given
    mlserver_runtime: str = ""  # the MLServer implementation class
    # OIP v2 body: "FP64" or "FP32" for one [N, F] tensor, "columns" for one per column.
    oip: str = "FP64"
    atol: float = 0.0  # 0: predictions must be equal

    @property
    def name(self) -> str:
        return f"bench-{self.key}"


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return x, y


def mixed_frame(x: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """The numeric features plus the seeded string columns (object dtype, as JSON gives)."""
    rng = np.random.default_rng(ROWS_SEED)
    frame = x.copy()
    for name, categories in STRINGS.items():
        # Draw from the first half of the categories for one class and the second half for
        # the other with probability 0.6, otherwise uniformly.
        uniform = rng.integers(0, len(categories), len(frame))
        half = len(categories) // 2
        lean = np.where(
            y.to_numpy() == 1,
            rng.integers(0, max(half, 1), len(frame)),
            rng.integers(half, len(categories), len(frame)),
        )
        picks = np.where(rng.random(len(frame)) < 0.6, lean, uniform)
        frame[name] = pd.Series([categories[i] for i in picks], index=frame.index, dtype=object)
    return frame


def sklearn_models(x: pd.DataFrame, y: pd.Series) -> list[tuple[Model, Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    mixed = mixed_frame(x, y)
    numeric = list(x.columns)
    estimators: list[tuple[str, str, pd.DataFrame, Any]] = [
        (
            "rf",
            "RandomForest, 50 trees",
            x,
            RandomForestClassifier(n_estimators=50, random_state=0),
        ),
        (
            "logreg",
            "StandardScaler + LogisticRegression",
            x,
            Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]),
        ),
        (
            "hgb",
            "HistGradientBoostingClassifier",
            x,
            HistGradientBoostingClassifier(random_state=0),
        ),
        (
            "mixed",
            "ColumnTransformer (one-hot + scaling) + LogisticRegression, mixed frame",
            mixed,
            Pipeline(
                [
                    (
                        "columns",
                        ColumnTransformer(
                            [
                                ("num", StandardScaler(), numeric),
                                ("cat", OneHotEncoder(handle_unknown="ignore"), list(STRINGS)),
                            ]
                        ),
                    ),
                    ("clf", LogisticRegression(max_iter=1000)),
                ]
            ),
        ),
    ]
    out = []
    for key, title, frame, estimator in estimators:
        estimator.fit(frame, y)
        model = Model(
            key,
            title,
            frame,
            np.asarray(estimator.predict(frame)),
            mlserver_runtime="mlserver_sklearn.SKLearnModel",
            oip="columns" if key == "mixed" else "FP64",
        )
        out.append((model, estimator))
    return out


def torch_model(x: pd.DataFrame, y: pd.Series) -> tuple[Model, Any]:
    """A 30-64-32-1 MLP with sigmoid output, its input scaling as a frozen first layer."""
    import torch

    torch.manual_seed(0)
    features = np.array(x.to_numpy(dtype=np.float32))  # writable: torch shares it
    mean, std = features.mean(axis=0), features.std(axis=0)
    scale = torch.nn.Linear(features.shape[1], features.shape[1])
    with torch.no_grad():
        scale.weight.copy_(torch.diag(torch.from_numpy(1.0 / std)))
        scale.bias.copy_(torch.from_numpy(-mean / std))
    scale.requires_grad_(False)
    net = torch.nn.Sequential(
        scale,
        torch.nn.Linear(features.shape[1], 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 1),
        torch.nn.Sigmoid(),
    )
    inputs = torch.from_numpy(features)
    target = torch.from_numpy(y.to_numpy(dtype=np.float32)).reshape(-1, 1)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    loss_fn = torch.nn.BCELoss()
    for _ in range(200):
        optimiser.zero_grad()
        loss_fn(net(inputs), target).backward()
        optimiser.step()
    net.eval()
    with torch.inference_mode():
        # What mlflow.pytorch's pyfunc does with a frame: float32 matrix, one forward pass.
        reference = net(torch.from_numpy(np.array(x.to_numpy(dtype=np.float32)))).numpy()[:, 0]
    model = Model(
        "mlp",
        "PyTorch MLP 30-64-32-1",
        x,
        reference,
        mlserver_runtime="mlserver_mlflow.MLflowRuntime",
        oip="FP32",
        atol=TORCH_ATOL,
    )
    return model, net


def log(models: list[tuple[Model, Any]], workdir: pathlib.Path) -> None:
    """Log and register each model, download it, and lay out its MLServer directory."""
    import joblib
    import mlflow
    import skops.io

    from toque.core import digest, trusted_types
    from toque.serving import bins

    experiment = mlflow.create_experiment("bench", artifact_location=str(workdir / "artifacts"))
    mlflow.set_experiment(experiment_id=experiment)
    for model, fitted in models:
        with mlflow.start_run() as run:
            if model.key == "mlp":
                import mlflow.pytorch

                mlflow.pytorch.log_model(
                    fitted,
                    name="model",
                    registered_model_name=model.name,
                    signature=mlflow.models.infer_signature(
                        model.frame, model.reference.reshape(-1, 1)
                    ),
                    # MLflow 3's default, 'pt2' (torch.export), needs an example and fixes
                    # shapes; the pickled module is what mlflow.pytorch has always served.
                    serialization_format="pickle",
                )
            else:
                found = skops.io.get_untrusted_types(data=skops.io.dumps(fitted))
                foreign = trusted_types.foreign(found)
                if foreign:
                    raise SystemExit(f"{model.key}: skops types off the allow-list: {foreign}")
                mlflow.sklearn.log_model(
                    fitted,
                    name="model",
                    registered_model_name=model.name,
                    signature=mlflow.models.infer_signature(model.frame, model.reference),
                    skops_trusted_types=trusted_types.trusted(found),
                )
            bins.log_bins(model.frame, run.info.run_id, workdir)
        model.uri = f"models:/{model.name}/1"
        model.local = pathlib.Path(
            mlflow.artifacts.download_artifacts(model.uri, dst_path=str(workdir / model.key))
        )
        model.digest = digest.model_digest(model.local)
        model.mlserver_dir = workdir / "mlserver" / model.key
        model.mlserver_dir.mkdir(parents=True)
        if model.key == "mlp":
            # The same module saved with a tensor signature: under the logged column
            # signature MLServer's MLflow runtime decodes a DataFrame, mlflow.pytorch answers
            # a DataFrame with an integer column name, and MLServer fails to encode that
            # (pydantic: output name must be a string).
            features = model.frame.to_numpy(dtype=np.float32)
            mlflow.pytorch.save_model(
                fitted,
                str(model.mlserver_dir / "model"),
                signature=mlflow.models.infer_signature(features, model.reference.reshape(-1, 1)),
                serialization_format="pickle",
            )
            uri = "./model"
        else:
            joblib.dump(fitted, model.mlserver_dir / "model.joblib")
            uri = "./model.joblib"
        settings = {
            "name": model.name,
            "implementation": model.mlserver_runtime,
            "parameters": {"uri": uri, "version": "1"},
        }
        (model.mlserver_dir / "model-settings.json").write_text(json.dumps(settings))


def build(workdir: pathlib.Path, keys: set[str]) -> tuple[list[Model], str]:
    """The models named in ``keys``, logged; and why the MLP is missing ("" if it is not)."""
    x, y = breast_cancer()
    fitted = [(m, e) for m, e in sklearn_models(x, y) if m.key in keys]
    missing = ""
    if "mlp" in keys:
        try:
            fitted.append(torch_model(x, y))
        except ImportError as error:
            missing = f"torch does not import here ({error})"
    log(fitted, workdir)
    return [model for model, _ in fitted], missing
