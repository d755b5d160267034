"""``toque report``'s plots: the numpy curves agree with scikit-learn, and every plot is a
non-empty PNG of the documented size that an image library opens. Also the trainer's side:
the validation predictions and feature importance the plots are drawn from."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from toque.trainer import report_artifacts as artifacts
from toque.workflow import plots, report

RNG = np.random.default_rng(7)


def assert_png(path: pathlib.Path | None) -> None:
    assert path is not None and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == plots.PIXELS == (640, 480)
        image.load()  # the whole file decodes, not only its header
        # Something was drawn: not a single flat colour.
        low, high = image.convert("L").getextrema()
        assert isinstance(low, int) and isinstance(high, int) and low < high


def classifier_frame(n: int = 400) -> pd.DataFrame:
    label = RNG.integers(0, 2, n)
    score = np.clip(label * 0.3 + RNG.random(n) * 0.7, 0, 1).round(2)  # ties on purpose
    return pd.DataFrame(
        {
            artifacts.LABEL: label,
            artifacts.PREDICTION: (score > 0.5).astype(int),
            "proba_0": 1 - score,
            "proba_1": score,
        }
    )


def regressor_frame(n: int = 300) -> pd.DataFrame:
    truth = RNG.normal(size=n)
    return pd.DataFrame(
        {artifacts.LABEL: truth, artifacts.PREDICTION: truth + RNG.normal(0, 0.3, n)}
    )


# -- curves --------------------------------------------------------------------------------


def test_roc_auc_and_average_precision_equal_scikit_learns_with_tied_scores() -> None:
    from sklearn import metrics

    frame = classifier_frame()
    positive = frame[artifacts.LABEL].to_numpy() == 1
    scores = frame["proba_1"].to_numpy()
    fpr, tpr, area = plots.roc_curve(positive, scores)
    assert area == pytest.approx(metrics.roc_auc_score(positive, scores), abs=1e-12)
    want_fpr, want_tpr, _ = metrics.roc_curve(positive, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, want_fpr)
    np.testing.assert_allclose(tpr, want_tpr)
    _, _, average = plots.pr_curve(positive, scores)
    assert average == pytest.approx(metrics.average_precision_score(positive, scores), abs=1e-12)


def test_binary_scores_take_the_second_class_as_positive() -> None:
    frame = pd.DataFrame(
        {
            artifacts.LABEL: ["no", "yes", "yes"],
            "proba_no": [0.9, 0.2, 0.4],
            "proba_yes": [0.1, 0.8, 0.6],
        }
    )
    found = plots.binary_scores(frame)
    assert found is not None
    name, positive, scores = found
    assert name == "yes" and positive.tolist() == [False, True, True]
    assert scores.tolist() == [0.1, 0.8, 0.6]


def test_no_curves_for_a_multiclass_model_or_a_single_class() -> None:
    three = pd.DataFrame(
        {
            artifacts.LABEL: [0, 1, 2],
            "proba_0": [1, 0, 0],
            "proba_1": [0, 1, 0],
            "proba_2": [0, 0, 1],
        }
    )
    one = pd.DataFrame({artifacts.LABEL: [1, 1], "proba_0": [0.1, 0.2], "proba_1": [0.9, 0.8]})
    assert plots.binary_scores(three) is None and plots.binary_scores(one) is None


def test_the_confusion_matrix_counts_over_every_class_either_side_holds() -> None:
    frame = pd.DataFrame(
        {artifacts.LABEL: ["a", "a", "b", "b"], artifacts.PREDICTION: ["a", "c", "b", "b"]}
    )
    table = plots.confusion(frame)
    assert list(table.index) == list(table.columns) == ["a", "b", "c"]
    assert table.to_numpy().tolist() == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]


# -- the PNGs ------------------------------------------------------------------------------


def test_each_classifier_plot_is_a_png_of_the_documented_size(tmp_path: pathlib.Path) -> None:
    frame = classifier_frame()
    assert_png(plots.plot_roc(frame, tmp_path / "roc.png"))
    assert_png(plots.plot_pr(frame, tmp_path / "pr.png"))
    assert_png(plots.plot_confusion(frame, tmp_path / "confusion.png"))


def test_the_residuals_plot_is_a_png_of_the_documented_size(tmp_path: pathlib.Path) -> None:
    assert_png(plots.plot_residuals(regressor_frame(), tmp_path / "residuals.png"))


def test_the_importance_plot_shows_the_top_features(tmp_path: pathlib.Path) -> None:
    importance = [(f"feature number {i} with a rather long name", float(i)) for i in range(40)]
    assert_png(plots.plot_importance(importance, tmp_path / "importance.png"))
    assert plots.plot_importance([], tmp_path / "none.png") is None


def test_the_history_plot_needs_two_values(tmp_path: pathlib.Path) -> None:
    points = [
        report.HistoryPoint("v1", "1", "r1", 0.8, False, False),
        report.HistoryPoint("v2", "2", "r2", 0.85, True, False),
        report.HistoryPoint("this run", None, "r3", 0.9, False, True),
    ]
    assert_png(plots.plot_history("val_accuracy", points, tmp_path / "history.png"))
    assert plots.plot_history("val_accuracy", points[:1], tmp_path / "one.png") is None


def facts(frame: pd.DataFrame | None, task: str | None) -> report.Facts:
    return report.Facts(
        target="run:r3",
        run=report.Run("r3", metrics={"val_accuracy": 0.9}),
        model="iris",
        primary_metric="val_accuracy",
        history=(report.VersionPoint("1", "r1", 0.8),),
        predictions=frame,
        task=task,
        importance=(("a", 0.7), ("b", 0.3)),
    )


def test_render_draws_every_plot_of_a_binary_classifier(tmp_path: pathlib.Path) -> None:
    f = facts(classifier_frame(), artifacts.CLASSIFICATION)
    drawn, notes = plots.render(f, report.history(f), tmp_path)
    assert [p.name for p in drawn] == ["roc", "pr", "confusion", "importance", "history"]
    assert notes == []
    for p in drawn:
        assert p.path == tmp_path / f"{p.name}.png"
        assert_png(p.path)


def test_render_draws_residuals_for_a_regressor(tmp_path: pathlib.Path) -> None:
    f = facts(regressor_frame(), artifacts.REGRESSION)
    drawn, _ = plots.render(f, (), tmp_path)
    assert [p.name for p in drawn] == ["residuals", "importance"]


def test_a_plot_that_fails_costs_only_itself_and_leaves_a_note(tmp_path: pathlib.Path) -> None:
    # Scores that are not numbers: the curves cannot be drawn, the rest can.
    broken = pd.DataFrame(
        {
            artifacts.LABEL: [0, 1],
            artifacts.PREDICTION: [0, 1],
            "proba_0": ["x", "y"],
            "proba_1": ["z", "w"],
        }
    )
    drawn, notes = plots.render(facts(broken, artifacts.CLASSIFICATION), (), tmp_path)
    assert [p.name for p in drawn] == ["confusion", "importance"]
    assert [n.split(":")[0] for n in notes] == [
        "no roc curve plot",
        "no precision-recall curve plot",
    ]


# -- the trainer's artifacts ---------------------------------------------------------------


def iris_split() -> tuple[pd.DataFrame, pd.Series[int], list[str]]:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    return frame, frame["target"], features


def test_a_classifier_gets_labels_predictions_and_one_score_per_class() -> None:
    from sklearn.ensemble import RandomForestClassifier

    frame, labels, features = iris_split()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame[features], labels)
    got, task = artifacts.predictions_frame(model, frame[features], labels)
    assert task == artifacts.CLASSIFICATION
    assert list(got.columns) == ["label", "prediction", "proba_0", "proba_1", "proba_2"]
    assert got["prediction"].tolist() == model.predict(frame[features]).tolist()
    np.testing.assert_allclose(got[["proba_0", "proba_1", "proba_2"]].sum(axis=1), 1.0)


def test_a_regressor_gets_labels_and_predictions_only() -> None:
    from sklearn.linear_model import LinearRegression

    frame, labels, features = iris_split()
    model = LinearRegression().fit(frame[features], labels)
    got, task = artifacts.predictions_frame(model, frame[features], labels)
    assert task == artifacts.REGRESSION and list(got.columns) == ["label", "prediction"]


def test_the_parquet_keeps_the_frame_the_task_and_the_row_count() -> None:
    frame = classifier_frame(10)
    data = artifacts.predictions_parquet(frame, artifacts.CLASSIFICATION, 1234)
    back, task = artifacts.read_predictions(data)
    pd.testing.assert_frame_equal(back, frame)
    assert task == artifacts.CLASSIFICATION

    import io

    import pyarrow.parquet as pq

    assert pq.read_schema(io.BytesIO(data)).metadata[artifacts.ROWS_KEY] == b"1234"


def test_importance_comes_from_feature_importances_named_by_the_columns() -> None:
    from sklearn.ensemble import RandomForestClassifier

    frame, labels, features = iris_split()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame[features], labels)
    found = artifacts.feature_importance(model, features)
    assert found is not None and found["source"] == "feature_importances_"
    values = {f["name"]: f["importance"] for f in found["features"]}
    assert values == dict(zip(features, model.feature_importances_.tolist(), strict=True))
    ranked = [f["importance"] for f in found["features"]]
    assert ranked == sorted(ranked, reverse=True)


def test_importance_of_a_linear_pipeline_is_the_mean_absolute_coefficient() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, labels, features = iris_split()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(frame[features], labels)
    found = artifacts.feature_importance(model, ["ignored"] * 4)
    assert found is not None and found["source"] == "|coef_|"
    want = np.abs(model[-1].coef_).mean(axis=0)
    values = {f["name"]: f["importance"] for f in found["features"]}
    assert values == pytest.approx(dict(zip(features, want.tolist(), strict=True)))


def test_a_model_without_importances_gets_none() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    frame, labels, features = iris_split()
    model = KNeighborsClassifier().fit(frame[features], labels)
    assert artifacts.feature_importance(model, features) is None


def test_write_produces_both_files_and_skips_what_fails(tmp_path: pathlib.Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    frame, labels, features = iris_split()
    model = DecisionTreeClassifier(random_state=0).fit(frame[features], labels)
    written = artifacts.write(model, frame[features], labels, tmp_path / "a")
    assert [p.name for p in written] == [artifacts.PREDICTIONS_FILE, artifacts.IMPORTANCE_FILE]
    assert json.loads(written[1].read_text())["source"] == "feature_importances_"

    class Broken:
        def predict(self, features: object) -> object:
            raise RuntimeError("boom")

    assert artifacts.write(Broken(), frame[features], labels, tmp_path / "b") == []


def test_a_large_validation_set_is_sampled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    monkeypatch.setattr(artifacts, "MAX_ROWS", 50)
    frame, labels, features = iris_split()
    model = DecisionTreeClassifier(random_state=0).fit(frame[features], labels)
    (path, _) = artifacts.write(model, frame[features], labels, tmp_path)
    back, _ = artifacts.read_predictions(path.read_bytes())
    assert len(back) == 50
