"""``toque report`` against a real MLflow (artifacts in MinIO) and a real data store.

Two runs are trained in-process by the trainer runtime, each on its own version of a pushed
dataset: the champion (registered, holding ``@champion``) and the candidate. The report's
numbers are checked against what MLflow's own client reads, its dataset rows against the
store's manifests, and its PNGs are opened with PIL, from disk and from their uploaded URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import pathlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from toque.api import trainresult
from toque.cli import report_cmd
from toque.clients import mlflow_registry
from toque.core import exitcodes
from toque.data import store as data_store
from toque.local import services
from toque.trainer import context
from toque.trainer import report_artifacts as artifacts
from toque.trainer import run as trainer
from toque.workflow import plots

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

DROPPED = "worst fractal dimension"  # the champion's dataset lacks this column


def train_forest(ctx: context.TrainContext) -> context.Result:
    from sklearn import metrics
    from sklearn.ensemble import RandomForestClassifier

    frame = ctx.datasets["train"].frame()
    features = [c for c in frame.columns if c != "target"]
    train, validation = frame.iloc[::2], frame.iloc[1::2]
    model = RandomForestClassifier(
        n_estimators=int(ctx.params["n_estimators"]),
        max_depth=int(ctx.params["max_depth"]),
        random_state=0,
    ).fit(train[features], train["target"])
    scores = model.predict_proba(validation[features])[:, 1]
    ctx.log_metrics(
        {
            "train_accuracy": model.score(train[features], train["target"]),
            "val_accuracy": model.score(validation[features], validation["target"]),
            "val_roc_auc": metrics.roc_auc_score(validation["target"], scores),
            "val_log_loss": metrics.log_loss(validation["target"], scores),
        }
    )
    return context.Result(model=model, validation=validation, label_column="target")


@dataclasses.dataclass(frozen=True)
class Trained:
    model: str
    champion: str  # run ids
    candidate: str
    champion_ref: str  # pinned dataset refs
    candidate_ref: str
    env: dict[str, str]


def _train(
    patch: pytest.MonkeyPatch, workdir: pathlib.Path, name: str, spec: dict[str, Any]
) -> str:
    patch.setenv("TOQUE_RUN_SPEC", json.dumps(spec))
    patch.setenv("TOQUE_WORKDIR", str(workdir / name))
    patch.setenv("TOQUE_TRAININGJOB_NAMESPACE", "ml")
    patch.setenv("TOQUE_TRAININGJOB_NAME", name)
    termination = workdir / f"{name}.termination"
    patch.setenv("TOQUE_TERMINATION_MESSAGE_PATH", str(termination))
    assert trainer.main(f"{__name__}:train_forest") == exitcodes.OK, termination.read_text()
    result = trainresult.decode(termination.read_text())
    assert result is not None
    return result.run_id


@pytest.fixture(scope="module")
def trained(
    minio: services.Minio,
    mlflow_server: services.Mlflow,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Trained]:
    from sklearn.datasets import load_breast_cancer

    workdir = tmp_path_factory.mktemp("report")
    bucket = f"report-{uuid.uuid4().hex[:12]}"
    minio.create_bucket(bucket)
    env = {
        **minio.env(),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "TOQUE_DATA_BUCKET": bucket,
        "TOQUE_USER": "tester",
    }
    frame = load_breast_cancer(as_frame=True).frame
    old, new = workdir / "old", workdir / "new"
    old.mkdir()
    new.mkdir()
    frame.drop(columns=[DROPPED]).iloc[:400].to_csv(old / "cancer.csv", index=False)
    frame.to_csv(new / "cancer.csv", index=False)
    model = f"report-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        store = data_store.DataStore.from_env()
        champion_ref = store.push(old, "cancer", tags=["v1"]).ref
        candidate_ref = store.push(new, "cancer", tags=["v2"]).ref
        common = {"experiment": model, "model": {"name": model}}
        champion = _train(
            patch,
            workdir,
            "champion",
            {
                **common,
                "datasets": [{"ref": "cancer:v1", "alias": "train"}],
                "params": {"n_estimators": 3, "max_depth": 2, "criterion": "gini"},
            },
        )
        candidate = _train(
            patch,
            workdir,
            "candidate",
            {
                **common,
                "datasets": [{"ref": "cancer:v2", "alias": "train"}],
                "params": {"n_estimators": 40, "max_depth": 6, "class_weight": "balanced"},
            },
        )
    registry = mlflow_registry.Registry(mlflow_server.uri)
    version = registry.register(model, f"runs:/{champion}/model", champion, {}, "uid-champion")
    registry.set_alias(model, "champion", version)
    yield Trained(model, champion, candidate, champion_ref, candidate_ref, env)


@pytest.fixture
def env(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    for key, value in trained.env.items():
        monkeypatch.setenv(key, value)
    # No cluster for run: targets, whatever kubeconfig this machine has.
    monkeypatch.setattr(report_cmd, "_kube", lambda args, required: (None, "default"))
    return trained


def report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="toque")
    report_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    code: int = args.func(args)
    return code


def table(markdown: str, heading: str) -> dict[str, list[str]]:
    """The first table after ``heading``: its body rows by their first cell."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return {row[0]: row for row in rows}


def mlflow_run(run_id: str) -> Any:
    import mlflow

    return mlflow.MlflowClient().get_run(run_id)


def assert_png(data: bytes) -> None:
    assert len(data) > 1000
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == plots.PIXELS
        image.load()


def test_the_trainer_logs_the_predictions_and_importance_the_report_plots(env: Trained) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    names = {a.path for a in client.list_artifacts(env.candidate, artifacts.ARTIFACT_DIR)}
    assert {artifacts.PREDICTIONS_PATH, artifacts.IMPORTANCE_PATH} <= names
    local = mlflow.artifacts.download_artifacts(
        run_id=env.candidate, artifact_path=artifacts.PREDICTIONS_PATH
    )
    frame, task = artifacts.read_predictions(pathlib.Path(local).read_bytes())
    assert task == artifacts.CLASSIFICATION and len(frame) == 569 // 2
    assert list(frame.columns) == ["label", "prediction", "proba_0", "proba_1"]
    assert mlflow_run(env.candidate).data.tags["toque.model"] == env.model


def test_markdown_numbers_datasets_and_plots_match_mlflow_and_the_store(
    env: Trained, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "reports" / "report.md"
    figures = tmp_path / "reports" / "figures"
    code = report(f"run:{env.candidate}", "--out", str(out), "--plots-dir", str(figures))
    assert code == exitcodes.OK
    text = out.read_text()
    ours, theirs = mlflow_run(env.candidate).data, mlflow_run(env.champion).data
    assert f"compared with **@champion** (version 1, run `{env.champion}`)" in text

    metrics = table(text, "### Metrics")
    assert set(metrics) == set(ours.metrics) | set(theirs.metrics)
    for name, cells in metrics.items():
        assert float(cells[1]) == ours.metrics[name], name
        assert float(cells[2]) == theirs.metrics[name], name
        # The difference is derived, and rounded to six significant digits for reading.
        delta = ours.metrics[name] - theirs.metrics[name]
        assert float(cells[3]) == pytest.approx(delta, rel=1e-5)

    params = table(text, "### Parameters")
    assert params["n_estimators"] == ["n_estimators", "`40`", "`3`", "changed"]
    assert params["class_weight"] == ["class_weight", "`balanced`", report_cmd_dash(), "added"]
    assert params["criterion"] == ["criterion", report_cmd_dash(), "`gini`", "removed"]
    assert ours.params["n_estimators"] == "40" and theirs.params["n_estimators"] == "3"

    store = data_store.DataStore.from_env()
    new, old = store.show(env.candidate_ref), store.show(env.champion_ref)
    assert new.rows == 569 and old.rows == 400
    train = table(text, "### Data")["train"]
    assert train[3:7] == ["no", str(new.rows), f"+{new.rows - old.rows}", "31"]
    assert f"+ column cancer.csv:{DROPPED} (float64, numeric)" in train[7]

    assert "### Evaluation gate: not known" in text
    links = re.findall(r"!\[[^]]+\]\(([^)]+)\)", text)
    assert [pathlib.Path(link).stem for link in links] == [
        "roc",
        "pr",
        "confusion",
        "importance",
        "history",
    ]
    for link in links:
        assert not pathlib.Path(link).is_absolute()
        assert_png((out.parent / link).read_bytes())


def report_cmd_dash() -> str:
    from toque.workflow import report as report_module

    return report_module.DASH


def test_json_gives_the_same_numbers_as_mlflow(env: Trained, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "report.json"
    code = report(f"run:{env.candidate}", "--format", "json", "--out", str(out), "--no-plots")
    assert code == exitcodes.OK
    data = json.loads(out.read_text())
    ours, theirs = mlflow_run(env.candidate).data, mlflow_run(env.champion).data
    for row in data["metrics"]:
        assert row["value"] == ours.metrics[row["name"]]
        assert row["champion"] == theirs.metrics[row["name"]]
    (train,) = data["datasets"]
    assert (train["ref"], train["champion_ref"]) == (env.candidate_ref, env.champion_ref)
    assert (train["rows"], train["champion_rows"], train["rows_delta"]) == (569, 400, 169)
    assert data["figures"] == []


def test_upload_logs_the_plots_on_the_run_and_links_them_by_url(
    env: Trained, tmp_path: pathlib.Path
) -> None:
    import mlflow

    out = tmp_path / "report.md"
    code = report(
        f"run:{env.candidate}", "--upload", "--out", str(out), "--plots-dir", str(tmp_path / "f")
    )
    assert code == exitcodes.OK
    links = re.findall(r"!\[[^]]+\]\(([^)]+)\)", out.read_text())
    assert len(links) == 5
    for link in links:
        assert link.startswith(f"{env.env['MLFLOW_TRACKING_URI']}/get-artifact?path=toque%2Freport")
        response = requests.get(link, timeout=30)
        assert response.status_code == 200
        assert_png(response.content)
    listed = {a.path for a in mlflow.MlflowClient().list_artifacts(env.candidate, "toque/report")}
    assert listed == {
        f"toque/report/{n}.png" for n in ("roc", "pr", "confusion", "importance", "history")
    }


class FakeKube:
    """Objects as the API server would return them, by (kind, name); our wrapper's ``get``."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        assert namespace == "ml"
        return self.objects.get((kind, name))


def test_a_trainingjob_target_reports_the_gate_from_its_status(
    env: Trained, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = {
        "spec": {
            "model": {"name": env.model},
            "evaluation": {"mustBeatChampion": {"metric": "val_log_loss", "direction": "minimize"}},
        },
        "status": {
            "phase": "Succeeded",
            "mlflowRunId": env.candidate,
            "gate": {
                "passed": True,
                "results": [
                    {
                        "rule": "beat champion (champion) on val_log_loss",
                        "passed": True,
                        "message": "m",
                    }
                ],
            },
        },
    }
    kube = FakeKube({("TrainingJob", "candidate"): job})
    monkeypatch.setattr(report_cmd, "_kube", lambda args, required: (kube, "ml"))
    out = tmp_path / "report.md"
    assert report("tj/candidate", "--out", str(out), "--no-plots") == exitcodes.OK
    text = out.read_text()
    assert "### Evaluation gate: ✅ passed" in text and "From TrainingJob ml/candidate." in text
    assert (
        table(text, "### Evaluation gate")["beat champion (champion) on val_log_loss"][1]
        == "✅ pass"
    )
    # The gate's metric leads the table, judged in the gate's direction.
    first = text.split("### Metrics", 1)[1].split("\n")[4]
    assert first.startswith("| val_log_loss |")
    assert report("tj/missing", "--out", str(out)) == exitcodes.PERMANENT


def test_a_promoted_run_is_compared_with_the_version_it_replaced(
    env: Trained, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = mlflow_registry.Registry(env.env["MLFLOW_TRACKING_URI"])
    old = registry.alias_version(env.model, "champion")
    assert old is not None
    new = registry.register(
        env.model, f"runs:/{env.candidate}/model", env.candidate, {}, "uid-candidate"
    )
    registry.set_alias(env.model, "champion", new)
    try:
        kube = FakeKube(
            {
                ("TrainingJob", "candidate"): {
                    "spec": {"model": {"name": env.model}},
                    "status": {"mlflowRunId": env.candidate, "modelVersion": "candidate-v2"},
                },
                ("ModelVersion", "candidate-v2"): {"status": {"previous": "champion-v1"}},
                ("ModelVersion", "champion-v1"): {
                    "status": {"registry": {"version": old}, "runId": env.champion}
                },
            }
        )
        monkeypatch.setattr(report_cmd, "_kube", lambda args, required: (kube, "ml"))
        out = tmp_path / "report.json"
        code = report("candidate", "--format", "json", "--no-plots", "--out", str(out))
        assert code == exitcodes.OK
        data = json.loads(out.read_text())
        assert (data["champion_version"], data["champion_run_id"]) == (old, env.champion)
        assert not data["champion_is_this_run"]
        assert f"compared with the version it replaced, v{old}" in " ".join(data["notes"])
        theirs = mlflow_run(env.champion).data.metrics
        assert {m["name"]: m["champion"] for m in data["metrics"]} == theirs
    finally:
        registry.set_alias(env.model, "champion", old)


def test_an_unreachable_data_store_is_said_and_the_report_still_written(
    env: Trained, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOQUE_S3_ENDPOINT", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("TOQUE_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TOQUE_S3_CONNECT_TIMEOUT", "1")
    out = tmp_path / "report.md"
    assert report(f"run:{env.candidate}", "--out", str(out), "--no-plots") == exitcodes.OK
    text = out.read_text()
    assert "> the data store could not be read (" in text
    train = table(text, "### Data")["train"]
    assert train[1] == f"`{env.candidate_ref[:26]}`" and train[4] == report_cmd_dash()


def test_an_unknown_run_is_a_permanent_error(env: Trained) -> None:
    assert report("run:0123456789abcdef0123456789abcdef", "--no-plots") == exitcodes.PERMANENT
