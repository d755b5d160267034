"""``toque train`` logs the drift profile of the validation data as ``toque/feature-bins.json``.

The trainer runs in-process against the session's real MLflow and MinIO; the artifact is
read back as the model server (``toque.core.bins.parse``) and the drift monitor
(``toque.drift.profile.from_json``) read it.
"""

from __future__ import annotations

import pathlib

import pytest

from toque.api import trainresult
from toque.core import bins, exitcodes
from toque.drift import profile
from toque.local import services
from toque.trainer import context, run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def train_forest(ctx: context.TrainContext) -> context.Result:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    train, validation = frame.iloc[::2], frame.iloc[1::2]
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0)
    model.fit(train[features], train["target"])
    return context.Result(
        model=model,
        validation=validation,
        label_column="target",
    )


def test_the_run_logs_a_drift_profile_with_counts_and_performance(
    mlflow_server: services.Mlflow,
    minio: services.Minio,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
) -> None:
    import mlflow

    for key, value in {**minio.env(), "MLFLOW_TRACKING_URI": mlflow_server.uri}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TOQUE_RUN_SPEC", "{}")
    monkeypatch.setenv("TOQUE_WORKDIR", str(tmp_path / "work"))
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("TOQUE_TERMINATION_MESSAGE_PATH", str(termination))
    assert run.main(f"{__name__}:train_forest") == exitcodes.OK, termination.read_text()
    result = trainresult.decode(termination.read_text())
    assert result is not None
    run_id = result.run_id
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=bins.ARTIFACT_PATH, dst_path=str(tmp_path / "bins")
    )
    raw = pathlib.Path(path).read_bytes()
    logged = profile.from_json(raw)
    assert logged.rows == 284 and logged.source == f"run:{run_id}"
    radius = logged.features["mean radius"]
    assert radius.kind == "numeric" and sum(radius.counts) == 284
    assert len(radius.counts) == len(radius.edges) + 1
    assert "target" not in logged.features
    assert logged.prediction is not None and sum(logged.prediction.counts) == 284
    performance = logged.performance
    assert performance is not None and performance.classes == ["0", "1"]
    assert sum(performance.counts) == 284 and 0.8 < performance.reference_accuracy <= 1.0
    assert len(performance.counts) == len(bins.CONFIDENCE_EDGES) + 1
    # The model server still reads its buckets.
    assert bins.parse(raw)["mean radius"]["edges"] == radius.edges
