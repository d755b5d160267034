"""The chart's alerts (helm/toque/templates/prometheusrule.yaml) through hack/check-alerts.sh:
promtool checks them and runs tests/alerts/ on them; here each alert is also broken in turn
(its expression never fires) to see its firing case fail, and the chart's values are seen to
reach the rules. Needs helm and promtool: TOQUE_TOOLS_BIN (bash hack/build-tools.sh | tail -1).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "toque"
TESTS = ROOT / "tests" / "alerts"
ALERTS = (
    "ToqueTrainingJobFailed",
    "ToqueRollback",
    "ToqueCanaryStuck",
    "ToqueDataDrift",
    "ToqueFeatureDrift",
    "ToquePerformanceDrop",
    "ToqueBias",
    "ToqueDriftMonitorFailed",
    "ToqueOperatorDown",
    "ToqueOperatorNoLeader",
    "ToqueOperatorNotReconciling",
    "ToqueReconcileErrors",
)
NEVER = "vector(1) == 2"


def tools() -> pathlib.Path:
    value = os.environ.get("TOQUE_TOOLS_BIN")
    if not value or not all((pathlib.Path(value) / t).is_file() for t in ("helm", "promtool")):
        pytest.skip(
            "no helm and promtool: set TOQUE_TOOLS_BIN (bash hack/build-tools.sh | tail -1)"
        )
    return pathlib.Path(value)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The rules file check-alerts.sh tested (it must pass first)."""
    out = tmp_path_factory.mktemp("alerts") / "rules.yaml"
    env = {
        **os.environ,
        "TOQUE_TOOLS_BIN": str(tools()),
        "TOQUE_ALERT_RULES_OUT": str(out),
        "PYTHON": sys.executable,
    }
    run = subprocess.run(
        ["bash", str(ROOT / "hack" / "check-alerts.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    loaded: dict[str, Any] = yaml.safe_load(out.read_text())
    return loaded


def alert_rules(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups["groups"] for r in g["rules"] if "alert" in r}


def render(*flags: str) -> dict[str, Any]:
    """The chart's PrometheusRule, release acme in namespace ops, with these helm flags."""
    args = [str(tools() / "helm"), "template", "acme", str(CHART), "--namespace", "ops"]
    args += ["--kube-version", "1.34.0", "--show-only", "templates/prometheusrule.yaml"]
    args += ["--set", "prometheusRule.enabled=true", *flags]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    loaded: dict[str, Any] = yaml.safe_load(out)
    return loaded


def test_the_chart_ships_exactly_the_alerts_tested_here(rules: dict[str, Any]) -> None:
    assert sorted(alert_rules(rules)) == sorted(ALERTS)


@pytest.mark.parametrize("alert", ALERTS)
def test_an_alert_that_never_fires_fails_its_promtool_tests(
    alert: str, rules: dict[str, Any], tmp_path: pathlib.Path
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(rules))
    alert_rules(broken)[alert]["expr"] = NEVER
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(broken))
    files = [p for p in sorted(TESTS.glob("*.yaml")) if f"alertname: {alert}\n" in p.read_text()]
    assert files, f"no test of {alert} in {TESTS}"
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    run = subprocess.run(
        [str(tools() / "promtool"), "test", "rules", *(str(tmp_path / f.name) for f in files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert f"alertname: {alert}," in run.stdout + run.stderr


def test_every_expression_reads_the_configured_operator_job() -> None:
    default = alert_rules(render()["spec"])
    custom = alert_rules(render("--set", "prometheusRule.operatorJob=kubernetes-pods")["spec"])
    for name in ALERTS:
        assert 'job="acme-operator-metrics"' in default[name]["expr"]  # the Service's name
        assert 'job="kubernetes-pods"' in custom[name]["expr"]
        assert "acme-operator-metrics" not in custom[name]["expr"]


def test_thresholds_and_routing_labels_come_from_the_values() -> None:
    spec = render(
        "--set",
        "prometheusRule.canaryStuckSeconds=600,prometheusRule.eventWindow=1h",
        "--set",
        "prometheusRule.alertLabels.team=ml",
        "--set-json",  # --set reads 0.2 as a string
        "prometheusRule.reconcileErrorRatio=0.2",
    )["spec"]
    rules = alert_rules(spec)
    assert 'phase="Progressing"} > 600)' in rules["ToqueCanaryStuck"]["expr"]
    assert rules["ToqueReconcileErrors"]["expr"].endswith("> 0.2")
    assert "[1h]" in rules["ToqueTrainingJobFailed"]["expr"]
    assert all(r["labels"]["team"] == "ml" and r["labels"]["severity"] for r in rules.values())
    assert [g["name"] for g in spec["groups"]] == [
        "toque-training",
        "toque-rollouts",
        "toque-drift",
        "toque-operator",
    ]


def test_the_schema_refuses_a_severity_among_the_shared_alert_labels() -> None:
    with pytest.raises(subprocess.CalledProcessError) as error:
        render("--set", "prometheusRule.alertLabels.severity=page")
    assert "alertLabels" in error.value.stderr
