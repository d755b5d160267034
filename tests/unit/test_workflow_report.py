"""``toque report``'s pure half: facts to a ``Report``, and its Markdown and JSON.

Also the pure helpers of ``toque.workflow.gather`` (targets, links, gate and spec parsing)
and the CLI's arguments. The MLflow side is in tests/integration/test_report_mlflow.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import re
import typing

import pytest

from toque.cli import report_cmd
from toque.data import manifest
from toque.workflow import gather, report

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def run(run_id: str = "cand", **kwargs: object) -> report.Run:
    return report.Run(run_id=run_id, name=f"{run_id}-name", experiment_id="1", **kwargs)  # type: ignore[arg-type]


def facts(
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    **kwargs: object,
) -> report.Facts:
    champion = None
    if champion_metrics is not None:
        champion = report.Champion("champion", "3", run("champ", metrics=champion_metrics))
    fields: dict[str, object] = {
        "target": "trainingjob/iris",
        "run": run(metrics=metrics),
        "model": "iris",
        "champion": champion or report.Champion("champion", None),
        **kwargs,
    }
    return report.Facts(**fields)  # type: ignore[arg-type]


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading``, as cells."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return rows


def by_name(built: report.Report) -> dict[str, report.MetricRow]:
    return {m.name: m for m in built.metrics}


# -- metrics -------------------------------------------------------------------------------


def test_metric_difference_percent_and_arrow_against_the_champion() -> None:
    built = report.collect(facts({"val_accuracy": 0.95}, {"val_accuracy": 0.9}))
    row = by_name(built)["val_accuracy"]
    assert row.delta == pytest.approx(0.05)
    assert row.percent == pytest.approx(5.0 / 0.9)
    assert (row.change, row.better) == ("up", True)
    cells = table_rows(report.markdown(built), "### Metrics")[0]
    assert cells == ["val_accuracy", "0.95", "0.9", "+0.05", "+5.556%", "↑ better"]


def test_a_lower_loss_is_better_and_a_declared_direction_wins_over_the_name() -> None:
    built = report.collect(
        facts(
            {"val_loss": 0.2, "val_odd": 2.0},
            {"val_loss": 0.3, "val_odd": 1.0},
            directions={"val_odd": "minimize"},
        )
    )
    rows = by_name(built)
    assert (rows["val_loss"].change, rows["val_loss"].better) == ("down", True)
    assert (rows["val_odd"].change, rows["val_odd"].better) == ("up", False)


def test_a_metric_of_unknown_direction_gets_an_arrow_but_no_verdict() -> None:
    row = by_name(report.collect(facts({"rows_seen": 5.0}, {"rows_seen": 4.0})))["rows_seen"]
    assert (row.change, row.better) == ("up", None)


def test_an_unchanged_metric_is_same_with_no_verdict() -> None:
    row = by_name(report.collect(facts({"val_f1": 0.5}, {"val_f1": 0.5})))["val_f1"]
    assert (row.delta, row.percent, row.change, row.better) == (0.0, 0.0, "same", None)


def test_percent_is_not_given_when_the_champion_value_is_zero() -> None:
    built = report.collect(facts({"val_mae": 0.5}, {"val_mae": 0.0}))
    row = by_name(built)["val_mae"]
    assert row.delta == 0.5 and row.percent is None
    cells = table_rows(report.markdown(built), "### Metrics")[0]
    assert cells[3:5] == ["+0.5", report.DASH]
    assert report.to_dict(built)["metrics"][0]["percent"] is None


def test_a_metric_missing_on_either_side_has_no_difference() -> None:
    built = report.collect(facts({"val_new": 1.0, "val_auc": 0.8}, {"val_old": 2.0}))
    rows = by_name(built)
    assert (rows["val_new"].champion, rows["val_new"].delta) == (None, None)
    assert (rows["val_old"].value, rows["val_old"].delta) == (None, None)
    cells = {r[0]: r for r in table_rows(report.markdown(built), "### Metrics")}
    assert cells["val_old"][1:5] == [report.DASH, "2.0", report.DASH, report.DASH]
    assert cells["val_new"][1:3] == ["1.0", report.DASH]


def test_without_a_champion_the_table_has_only_this_run_and_a_note_says_why() -> None:
    built = report.collect(facts({"val_accuracy": 0.9}, None))
    assert built.champion_version is None and built.champion_run_id is None
    assert "no version of iris holds @champion yet" in built.notes
    text = report.markdown(built)
    assert "| Metric | This run |\n|---|---:|\n| val_accuracy | 0.9 |" in text
    assert "no version holds @champion" in text


def test_without_a_model_there_is_no_champion_and_a_note_says_so() -> None:
    built = report.collect(
        report.Facts(target="run:x", run=run(metrics={"val_accuracy": 0.9}), model=None)
    )
    assert built.champion_alias is None
    assert any("names no registered model" in n for n in built.notes)
    assert built.history == ()


def test_markdown_values_read_back_as_the_exact_doubles() -> None:
    values = {"a": 0.1 + 0.2, "b": 1 / 3, "c": 123456789.123456789, "d": 1e-12, "e": 5.0}
    champion = {k: v * 0.5 for k, v in values.items()}
    text = report.markdown(report.collect(facts(values, champion)))
    for cells in table_rows(text, "### Metrics"):
        assert float(cells[1]) == values[cells[0]]
        assert float(cells[2]) == champion[cells[0]]


def test_the_primary_metric_comes_first_and_system_metrics_are_left_out() -> None:
    metrics = {"a_metric": 1.0, "val_rmse": 2.0, "system/cpu_utilization_percentage": 50.0}
    built = report.collect(facts(metrics, None, primary_metric="val_rmse"))
    assert [m.name for m in built.metrics] == ["val_rmse", "a_metric"]


def test_primary_metric_prefers_common_validation_metrics_then_val_then_any() -> None:
    assert report.primary_metric({"x": 1, "val_f1": 1, "val_accuracy": 1}) == "val_accuracy"
    assert report.primary_metric({"x": 1, "val_zz": 1, "val_aa": 1}) == "val_aa"
    assert report.primary_metric({"b": 1, "a": 1}) == "a"
    assert report.primary_metric({}) is None
    assert report.primary_metric({"val_accuracy": 1}, "custom") == "custom"


def test_the_run_being_the_champion_is_said() -> None:
    same = run(metrics={"val_accuracy": 0.9})
    built = report.collect(
        report.Facts(
            target="run:cand",
            run=same,
            model="iris",
            champion=report.Champion("champion", "2", same),
        )
    )
    assert built.champion_is_this_run
    assert "this run's model is the champion (@champion)" in built.notes


# -- params --------------------------------------------------------------------------------


def test_params_diff_lists_changed_added_and_removed_and_counts_the_rest() -> None:
    ours = {"depth": "5", "trees": "200", "seed": "0", "new": "x"}
    theirs = {"depth": "5", "trees": "100", "seed": "0", "old": "y"}
    rows, same = report.params_diff(ours, theirs)
    assert [(r.name, r.value, r.champion, r.status) for r in rows] == [
        ("new", "x", None, "added"),
        ("old", None, "y", "removed"),
        ("trees", "200", "100", "changed"),
    ]
    assert same == 2


def test_params_markdown_shows_the_diff_and_the_unchanged_count() -> None:
    built = report.collect(
        facts(
            {},
            {},
            run=run(params={"trees": "200", "seed": "0"}),
            champion=report.Champion(
                "champion", "3", run("champ", params={"trees": "100", "seed": "0"})
            ),
        )
    )
    text = report.markdown(built)
    assert table_rows(text, "### Parameters") == [["trees", "`200`", "`100`", "changed"]]
    assert "1 other parameters unchanged." in text


def test_without_a_champion_every_param_is_listed_without_a_status() -> None:
    rows, same = report.params_diff({"b": "2", "a": "1"}, None)
    assert [(r.name, r.status) for r in rows] == [("a", None), ("b", None)] and same == 0


# -- datasets ------------------------------------------------------------------------------


def version(
    rows: int, columns: list[tuple[str, str, typing.Literal["numeric", "categorical"]]], seed: str
) -> manifest.Manifest:
    entry = manifest.FileEntry(path="train.csv", size=10, sha256=seed * 64)
    table = manifest.Table(
        path="train.csv",
        rows=rows,
        columns=tuple(manifest.Column(name=n, dtype=d, kind=k) for n, d, k in columns),
    )
    return manifest.build("iris", [entry], [table], creator="t", now=NOW)


def dataset_facts(old: manifest.Manifest, new: manifest.Manifest, **kwargs: object) -> report.Facts:
    fields: dict[str, object] = {
        "run": run(tags={"toque.dataset.train": new.ref}),
        "champion": report.Champion(
            "champion", "3", run("champ", tags={"toque.dataset.train": old.ref})
        ),
        "manifests": {old.ref: old, new.ref: new},
        **kwargs,
    }
    return facts({}, {}, **fields)


def test_dataset_diff_gives_rows_columns_digests_and_schema_changes() -> None:
    old = version(100, [("a", "float64", "numeric"), ("b", "int64", "numeric")], "a")
    new = version(
        120,
        [("a", "float64", "numeric"), ("b", "object", "categorical"), ("c", "int64", "numeric")],
        "b",
    )
    (row,) = report.collect(dataset_facts(old, new)).datasets
    assert (row.alias, row.ref, row.champion_ref, row.same) == ("train", new.ref, old.ref, False)
    assert (row.rows, row.champion_rows, row.rows_delta, row.columns) == (120, 100, 20, 3)
    assert "+ column train.csv:c (int64, numeric)" in row.changes
    assert "~ column train.csv:b int64/numeric -> object/categorical" in row.changes
    cells = table_rows(report.markdown(report.collect(dataset_facts(old, new))), "### Data")[0]
    assert cells[:7] == [
        "train",
        f"`iris@{new.digest[:19]}`",
        f"`iris@{old.digest[:19]}`",
        "no",
        "120",
        "+20",
        "3",
    ]


def test_the_same_dataset_version_has_no_changes() -> None:
    same = version(100, [("a", "float64", "numeric")], "a")
    (row,) = report.collect(dataset_facts(same, same)).datasets
    assert (row.same, row.rows_delta, row.changes) == (True, 0, ())


def test_an_unreachable_store_is_said_in_the_report_and_the_refs_still_shown() -> None:
    old = version(100, [("a", "float64", "numeric")], "a")
    new = version(120, [("a", "float64", "numeric")], "b")
    built = report.collect(dataset_facts(old, new, manifests={}, store_error="connection refused"))
    (row,) = built.datasets
    assert (row.ref, row.champion_ref, row.same, row.rows, row.note) == (
        new.ref,
        old.ref,
        False,
        None,
        None,
    )
    assert "> the data store could not be read (connection refused)" in report.markdown(built)


def test_a_version_missing_from_the_store_is_named() -> None:
    old = version(100, [("a", "float64", "numeric")], "a")
    new = version(120, [("a", "float64", "numeric")], "b")
    (row,) = report.collect(dataset_facts(old, new, manifests={new.ref: new})).datasets
    assert row.note == f"not in the data store: {old.ref}"
    assert row.rows == 120 and row.champion_rows is None and row.rows_delta is None


def test_a_dataset_only_one_side_read_is_marked() -> None:
    built = report.collect(
        facts(
            {},
            {},
            run=run(tags={"toque.dataset.extra": "x@sha256:" + "1" * 64}),
            champion=report.Champion(
                "champion", "3", run("champ", tags={"toque.dataset.train": "t@sha256:" + "2" * 64})
            ),
        )
    )
    changes = {d.alias: d.changes for d in built.datasets}
    assert changes == {
        "extra": ("not read by the champion",),
        "train": ("read by the champion, not by this run",),
    }


# -- gate ----------------------------------------------------------------------------------


def test_gate_rows_give_each_rule_its_verdict_and_detail() -> None:
    gate = report.Gate(
        passed=False,
        results=(
            report.GateRule("threshold val_accuracy >= 0.9", True, "val_accuracy = 0.95"),
            report.GateRule("beat champion (champion) on val_f1", False, "0.8 vs | 0.9"),
        ),
        source="TrainingJob ml/iris",
    )
    text = report.markdown(report.collect(facts({}, None, gate=gate)))
    assert "### Evaluation gate: ❌ failed" in text and "From TrainingJob ml/iris." in text
    assert table_rows(text, "### Evaluation gate") == [
        ["threshold val_accuracy >= 0.9", "✅ pass", "val_accuracy = 0.95"],
        ["beat champion (champion) on val_f1", "❌ fail", "0.8 vs \\| 0.9"],
    ]


def test_a_gate_without_rules_passes_and_says_so() -> None:
    gate = report.Gate(passed=True, results=(), source="TrainingJob ml/iris")
    text = report.markdown(report.collect(facts({}, None, gate=gate)))
    assert "### Evaluation gate: ✅ passed" in text and "The gate has no rules." in text


def test_an_unknown_gate_verdict_is_said() -> None:
    assert "### Evaluation gate: not known" in report.markdown(report.collect(facts({}, None)))


# -- history, figures, JSON ----------------------------------------------------------------


def test_history_marks_the_champion_and_appends_an_unregistered_run() -> None:
    points = (
        report.VersionPoint("1", "r1", 0.8),
        report.VersionPoint("2", "r2", None),
        report.VersionPoint("3", "champ", 0.9),
    )
    built = report.collect(
        facts({"val_accuracy": 0.95}, {}, history=points, primary_metric="val_accuracy")
    )
    assert [(p.label, p.value, p.champion, p.this_run) for p in built.history] == [
        ("v1", 0.8, False, False),
        ("v2", None, False, False),
        ("v3", 0.9, True, False),
        ("this run", 0.95, False, True),
    ]


def test_a_registered_run_is_not_appended_twice() -> None:
    points = (report.VersionPoint("1", "cand", 0.8),)
    built = report.collect(facts({"m": 0.8}, None, history=points, primary_metric="m"))
    assert [(p.label, p.this_run) for p in built.history] == [("v1", True)]


def test_figures_are_linked_as_images() -> None:
    figures = [report.Figure("roc", "ROC curve", "figures/roc.png")]
    text = report.markdown(report.collect(facts({}, None), figures))
    assert "### Plots\n\n![ROC curve](figures/roc.png)" in text


def test_json_has_the_same_facts_with_numbers_as_numbers_and_nan_as_null() -> None:
    built = report.collect(
        facts({"val_accuracy": 0.1 + 0.2, "val_loss": math.nan}, {"val_accuracy": 0.25})
    )
    data = json.loads(report.to_json(built))
    rows = {m["name"]: m for m in data["metrics"]}
    assert rows["val_accuracy"]["value"] == 0.1 + 0.2
    assert rows["val_accuracy"]["champion"] == 0.25
    assert isinstance(rows["val_accuracy"]["delta"], float)
    assert rows["val_loss"]["value"] is None
    assert data["champion_version"] == "3" and data["run_id"] == "cand"


def test_the_markdown_starts_with_the_marker_a_workflow_finds_its_comment_by() -> None:
    assert report.markdown(report.collect(facts({}, None))).startswith(report.MARKER)


# -- gather's pure helpers and the CLI -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("run:abc123", "run", "abc123"),
        ("tj/iris", "job", "iris"),
        ("trainingjob/iris", "job", "iris"),
        ("iris", "job", "iris"),
    ],
)
def test_targets_parse(text: str, kind: str, name: str) -> None:
    assert gather.parse_target(text) == gather.Target(kind, name)


@pytest.mark.parametrize("text", ["run:", "deploy/iris", "tj/", ""])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        gather.parse_target(text)


def test_links_never_carry_the_tracking_credentials() -> None:
    uri = "http://user:secret@mlflow.example:5000/"
    assert gather.public_url(uri) == "http://mlflow.example:5000"
    link = gather.artifact_link(uri, "r1", "toque/report/roc.png")
    assert link == (
        "http://mlflow.example:5000/get-artifact?path=toque%2Freport%2Froc.png&run_uuid=r1"
    )


def test_a_trainingjob_gate_status_becomes_the_verdict() -> None:
    status = {
        "gate": {
            "passed": False,
            "results": [
                {"rule": "r1", "passed": True, "message": "ok"},
                {"rule": "r2", "passed": False},
            ],
        }
    }
    gate = gather.gate_from_status(status, "TrainingJob ns/x")
    assert gate == report.Gate(
        False,
        (report.GateRule("r1", True, "ok"), report.GateRule("r2", False, "")),
        "TrainingJob ns/x",
    )
    assert gather.gate_from_status({}, "x") is None


def test_the_spec_gives_the_model_alias_metric_and_direction() -> None:
    thresholds = [{"metric": "val_accuracy", "op": ">=", "value": 0.9}]
    spec = {
        "model": {"name": "iris"},
        "evaluation": {
            "thresholds": thresholds,
            "mustBeatChampion": {"metric": "val_rmse", "direction": "minimize", "alias": "prod"},
        },
    }
    hints = gather.hints_from_spec(spec)
    assert hints == gather.Hints("iris", "prod", "val_rmse", {"val_rmse": "minimize"})
    only_threshold = gather.hints_from_spec({"evaluation": {"thresholds": thresholds}})
    assert (only_threshold.model, only_threshold.metric) == (None, "val_accuracy")


def test_a_job_adds_its_namespace_and_model_version_to_the_spec_hints() -> None:
    job = {"spec": {"model": {"name": "iris"}}, "status": {"modelVersion": "iris-v2"}}
    hints = gather.hints_from_job(job, "ml")
    assert (hints.model, hints.namespace, hints.model_version) == ("iris", "ml", "iris-v2")
    assert gather.hints_from_job({}, "ml").model_version is None


def test_a_runs_get_answer_becomes_a_run() -> None:
    found = {
        "info": {
            "run_id": "r1",
            "run_name": "n",
            "experiment_id": "7",
            "artifact_uri": "s3://b/r1",
        },
        "data": {
            "metrics": [{"key": "val_accuracy", "value": 0.5, "step": 0}],
            "params": [{"key": "trees", "value": "10"}],
            "tags": [{"key": "toque.dataset.train", "value": "iris@sha256:" + "a" * 64}],
        },
    }
    got = gather.run_from_json(found)
    assert (got.run_id, got.name, got.experiment_id, got.artifact_uri) == (
        "r1",
        "n",
        "7",
        "s3://b/r1",
    )
    assert got.metrics == {"val_accuracy": 0.5} and got.params == {"trees": "10"}
    assert got.datasets() == {"train": "iris@sha256:" + "a" * 64}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toque")
    report_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_cli_parses_its_options() -> None:
    args = parse(
        ["report", "tj/iris", "--champion", "prod", "--format", "json", "--out", "r.json",
         "--plots-dir", "figs", "--upload", "-n", "ml", "--mlflow-url", "https://mlflow.example"]
    )  # fmt: skip
    assert (args.target, args.champion, args.format, args.out) == (
        "tj/iris",
        "prod",
        "json",
        pathlib.Path("r.json"),
    )
    assert (args.plots_dir, args.upload, args.namespace, args.mlflow_url) == (
        pathlib.Path("figs"),
        True,
        "ml",
        "https://mlflow.example",
    )
    defaults = parse(["report", "run:abc"])
    assert (defaults.format, defaults.plots_dir, defaults.upload) == (
        "markdown",
        pathlib.Path("reports/figures"),
        False,
    )
    assert defaults.func is report_cmd.run


def test_a_bad_target_or_no_tracking_uri_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert report_cmd.run(parse(["report", "deploy/x"])) == report_cmd.EXIT_USAGE
    assert report_cmd.run(parse(["report", "run:abc"])) == report_cmd.EXIT_USAGE
    assert re.search(r"MLFLOW_TRACKING_URI", capsys.readouterr().err)


def test_plot_links_are_relative_to_the_report_file() -> None:
    path = pathlib.Path("reports/figures/roc.png")
    assert report_cmd._link(path, pathlib.Path("reports/report.md")) == "figures/roc.png"
    assert report_cmd._link(path, None) == "reports/figures/roc.png"
