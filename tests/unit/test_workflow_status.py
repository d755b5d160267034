"""``toque status``: the joined rows (grouping by model, what each kind shows) and the output
without a terminal: plain columns, no escape codes."""

from __future__ import annotations

import argparse
import datetime as dt
import io
from typing import Any

import pytest
import rich.console

from toque.cli import status_cmd
from toque.clients import kube
from toque.core import exitcodes
from toque.workflow import status

NOW = dt.datetime(2025, 3, 4, 12, 0, 0, tzinfo=dt.UTC)


def obj(name: str, spec: dict[str, Any], st: dict[str, Any], created: str = "2025-03-04T11:00:00Z",
        namespace: str = "ml") -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": spec,
        "status": st,
    }


TJ = obj(
    "churn-abc",
    {"model": {"name": "churn"}, "evaluation": {}},
    {
        "phase": "Succeeded",
        "mlflowRunId": "r1",
        "metrics": {"train_accuracy": 0.99, "val_f1": 0.9, "val_accuracy": 0.95, "val_auc": 0.97},
        "gate": {"passed": True, "results": [{"rule": "t", "passed": True}]},
        "modelVersion": "churn-abc",
    },
)
TJ_FAILED = obj(
    "churn-old",
    {"model": {"name": "churn"}},
    {"phase": "Failed", "message": "exit code 1: boom"},
    created="2025-03-04T10:00:00Z",
)
TJ_GATE = obj(
    "churn-bad",
    {"model": {"name": "churn"}},
    {
        "phase": "Succeeded",
        "gate": {
            "passed": False,
            "results": [
                {"rule": "threshold val_accuracy >= 0.9", "passed": False},
                {"rule": "gap", "passed": False},
                {"rule": "fairness", "passed": False},
            ],
        },
    },
    created="2025-03-04T11:30:00Z",
)
MV = obj(
    "churn-abc",
    {"model": "churn", "alias": "champion", "rollout": {"steps": [{"setWeight": 10}, {}, {}]}},
    {
        "phase": "Progressing",
        "registry": {"version": "4"},
        "canaryWeight": 10,
        "actualCanaryWeight": 8,
        "currentStep": 1,
        "stableVersion": "churn-old",
    },
)
MV_STABLE = obj(
    "churn-old", {"model": "churn"}, {"phase": "Promoted", "registry": {"version": "3"}},
    created="2025-03-01T00:00:00Z",
)  # fmt: skip
DM = obj(
    "churn-drift",
    {"model": "churn"},
    {
        "phase": "Drifted",
        "driftedFeatures": ["age", "tenure", "plan", "region"],
        "samples": 1200,
        "lastEvaluationTime": "2025-03-04T11:58:00Z",
    },
)
OTHER = obj("iris-1", {"model": {"name": "iris"}}, {"phase": "Running"}, namespace="a")
NO_MODEL = obj("scratch", {}, {}, created="2025-03-04T09:00:00Z")


def test_rows_group_by_model_then_kind_then_creation_time() -> None:
    table = status.rows([NO_MODEL, TJ, TJ_GATE, TJ_FAILED], [MV, MV_STABLE], [DM], now=NOW)
    assert [(r.model, r.kind, r.name) for r in table] == [
        ("churn", "TrainingJob", "churn-old"),
        ("churn", "TrainingJob", "churn-abc"),
        ("churn", "TrainingJob", "churn-bad"),
        ("churn", "ModelVersion", "churn-old"),
        ("churn", "ModelVersion", "churn-abc"),
        ("churn", "DriftMonitor", "churn-drift"),
        ("", "TrainingJob", "scratch"),
    ]


def test_namespaces_come_before_models() -> None:
    table = status.rows([TJ, OTHER], [], [], now=NOW)
    assert [r.namespace for r in table] == ["a", "ml"]


def test_a_trainingjob_row_shows_validation_metrics_gate_and_model_version() -> None:
    (row,) = status.rows([TJ], [], [], now=NOW)
    assert (row.phase, row.age, row.tone) == ("Succeeded", "60m", "good")
    assert row.details == (
        "val_accuracy=0.95 val_auc=0.97 val_f1=0.9 +1, gate passed, version churn-abc"
    )


def test_a_failed_gate_names_the_failed_rules_and_a_failed_run_its_message() -> None:
    gate, failed = status.rows([TJ_GATE, TJ_FAILED], [], [], now=NOW)[::-1]
    assert gate.details == "gate failed: threshold val_accuracy >= 0.9, gap +1"
    assert (failed.details, failed.tone) == ("exit code 1: boom", "bad")


def test_a_modelversion_row_shows_canary_weight_step_alias_and_stable() -> None:
    rolling, stable = status.rows([], [MV, MV_STABLE], [], now=NOW)[::-1]
    assert rolling.details == (
        "registry v4, canary 10% (actual 8%), step 2/3, alias champion, stable churn-old"
    )
    assert stable.details == "registry v3, stable"


def test_a_driftmonitor_row_shows_drifted_features_samples_and_last_evaluation() -> None:
    (row,) = status.rows([], [], [DM], now=NOW)
    assert row.details == "drifted: age, tenure, plan +1, 1200 samples, evaluated 2m ago"
    assert row.tone == "bad"


def test_an_object_without_status_shows_dashes() -> None:
    (row,) = status.rows([NO_MODEL], [], [], now=NOW)
    assert (row.model, row.phase, row.details) == ("", "-", "-")


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (90, "1m"), (7199, "119m"), (7200, "2h"), (200000, "2d")]
)
def test_ages_read_like_kubectls(seconds: float, text: str) -> None:
    assert status.duration(seconds) == text


def test_plain_text_is_aligned_columns_with_a_namespace_column_for_all_namespaces() -> None:
    text = status.text(status.rows([TJ_FAILED], [], [], now=NOW), all_namespaces=True)
    assert text.splitlines() == [
        "NAMESPACE   MODEL   KIND          NAME        PHASE    DETAILS             AGE",
        "ml          churn   TrainingJob   churn-old   Failed   exit code 1: boom   2h",
    ]


class FakeKube:
    def __init__(self, error: Exception | None = None) -> None:
        self.paths: list[str] = []
        self.error = error

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.paths.append(path)
        if self.error is not None:
            raise self.error
        if path.endswith("driftmonitors"):
            raise kube.ApiException(status=404, reason="Not Found")  # CRD not installed
        items = {"trainingjobs": [TJ], "modelversions": [MV]}[path.rsplit("/", 1)[1]]
        return {"items": items}


def not_a_terminal() -> tuple[rich.console.Console, io.StringIO]:
    buffer = io.StringIO()
    return rich.console.Console(file=buffer, force_terminal=None, width=200), buffer


def test_without_a_terminal_the_table_is_plain_text_without_escape_codes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    console, buffer = not_a_terminal()
    code = status_cmd.show(FakeKube(), "ml", console=console)  # type: ignore[arg-type]
    out = buffer.getvalue()
    assert code == exitcodes.OK
    assert "\x1b[" not in out and "─" not in out
    assert out.splitlines()[0].split() == ["MODEL", "KIND", "NAME", "PHASE", "DETAILS", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["churn", "TrainingJob", "churn-abc", "Succeeded"]


def test_on_a_terminal_the_phase_is_coloured() -> None:
    buffer = io.StringIO()
    console = rich.console.Console(file=buffer, force_terminal=True, color_system="standard")
    status_cmd.show(FakeKube(), "ml", console=console)  # type: ignore[arg-type]
    assert "\x1b[32mSucceeded" in buffer.getvalue()


def test_all_namespaces_lists_cluster_wide() -> None:
    client = FakeKube()
    status_cmd.show(client, None, console=not_a_terminal()[0])  # type: ignore[arg-type]
    assert client.paths == [
        "/apis/toque.dev/v1alpha1/trainingjobs",
        "/apis/toque.dev/v1alpha1/modelversions",
        "/apis/toque.dev/v1alpha1/driftmonitors",
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (kube.ApiException(status=403, reason="Forbidden"), exitcodes.PERMANENT),
        (kube.ApiException(status=503, reason="Unavailable"), exitcodes.TRANSIENT),
        (ConnectionRefusedError("refused"), exitcodes.TRANSIENT),
    ],
)
def test_api_errors_map_to_exit_codes(error: Exception, code: int) -> None:
    client = FakeKube(error)
    assert status_cmd.show(client, "ml", console=not_a_terminal()[0]) == code  # type: ignore[arg-type]


def test_watch_reprints_under_a_time_stamp_until_interrupted() -> None:
    console, buffer = not_a_terminal()
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt

    code = status_cmd.show(FakeKube(), "ml", watch=True, interval=3, console=console, sleep=sleep)  # type: ignore[arg-type]
    assert code == exitcodes.OK and rounds == [3, 3]
    assert buffer.getvalue().count("--- ") == 2 and buffer.getvalue().count("churn-abc") >= 2


def test_options_parse() -> None:
    parser = argparse.ArgumentParser(prog="toque")
    status_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["status", "-A", "--watch", "--interval", "2"])
    assert (args.all_namespaces, args.namespace, args.watch, args.interval) == (True, None, True, 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "-A", "-n", "x"])
