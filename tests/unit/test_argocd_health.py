"""The Argo CD health checks of argocd/resource_customizations, run in a real Lua 5.1.

As Argo CD's own runner does (util/lua/health_test.go), every ``health_test.yaml`` case runs
its ``health.lua`` on its ``testdata`` object and must give exactly the status and message
it names. The testdata are statuses the operator's decide functions wrote, so they must
still validate against the status models, and every phase the operator can write must
appear in them. The chart ships copies of the scripts, which must stay identical.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import typing
from typing import Any

import pytest
import yaml

from tests import argocd
from toque.api import driftmonitor as dm
from toque.api import modelversion as mv
from toque.api import schema
from toque.api import trainingjob as tj

CHART = argocd.ROOT / "helm" / "toque"
MODELS: dict[str, tuple[type[schema.KubeModel], type[schema.KubeModel], Any]] = {
    "TrainingJob": (tj.TrainingJobSpec, tj.TrainingJobStatus, tj.Phase),
    "ModelVersion": (mv.ModelVersionSpec, mv.ModelVersionStatus, mv.Phase),
    "DriftMonitor": (dm.DriftMonitorSpec, dm.DriftMonitorStatus, dm.Phase),
}
# The file name says what the case is for: <status>_<situation>.yaml.
PREFIXES = {
    "healthy": "Healthy",
    "progressing": "Progressing",
    "degraded": "Degraded",
    "suspended": "Suspended",
}


def cases_of(kind: str) -> list[dict[str, Any]]:
    path = argocd.script_path(kind).parent / "health_test.yaml"
    cases: list[dict[str, Any]] = yaml.safe_load(path.read_text())["tests"]
    return cases


def all_cases() -> list[Any]:
    return [
        pytest.param(kind, case, id=f"{kind}/{case['inputPath']}")
        for kind in argocd.KINDS
        for case in cases_of(kind)
    ]


def inputs_of(kind: str) -> list[pathlib.Path]:
    return sorted((argocd.script_path(kind).parent / "testdata").glob("*.yaml"))


@pytest.mark.parametrize(("kind", "case"), all_cases())
def test_health_script_gives_the_status_and_message_of_its_test_case(
    kind: str, case: dict[str, Any]
) -> None:
    obj = argocd.load_object(argocd.script_path(kind).parent / case["inputPath"])
    expected = case["healthStatus"]
    assert argocd.health(kind, obj) == (expected["status"], expected.get("message", ""))


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_every_testdata_file_is_a_case_and_its_name_states_the_expected_status(kind: str) -> None:
    cases = {c["inputPath"]: c["healthStatus"]["status"] for c in cases_of(kind)}
    files = {f"testdata/{p.name}" for p in inputs_of(kind)}
    assert set(cases) == files
    for path, status in cases.items():
        prefix = path.removeprefix("testdata/").split("_", 1)[0]
        assert PREFIXES[prefix] == status, path


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_testdata_holds_specs_and_statuses_the_operator_can_write(kind: str) -> None:
    spec_model, status_model, _ = MODELS[kind]
    for path in inputs_of(kind):
        obj = argocd.load_object(path)
        assert obj["apiVersion"] == "toque.dev/v1alpha1" and obj["kind"] == kind, path
        spec_model.model_validate(obj["spec"])
        if "status" in obj:
            status_model.model_validate(obj["status"])


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_every_phase_of_the_kind_has_a_test_case(kind: str) -> None:
    phases = set(typing.get_args(MODELS[kind][2]))
    seen = {(argocd.load_object(p).get("status") or {}).get("phase") for p in inputs_of(kind)}
    assert phases <= seen, f"no testdata for {sorted(phases - seen)}"
    assert None in seen, "no testdata without a status"


def trainingjob(metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t", "generation": 1},
        "spec": {"entrypoint": "m:f"},
        "status": {
            "phase": "Succeeded",
            "message": "training finished",
            "observedGeneration": 1,
            "metrics": metrics,
        },
    }


def test_metrics_print_with_four_decimals_sorted_and_capped_without_the_string_library() -> None:
    metrics = {
        "g_extra": 7.0,
        "f_long": 0.123456789,
        "e_negative": -1.5,
        "d_integer": 3.0,
        "c_tiny_negative": -0.00004,
        "b_large": 1234.56789,
        "a_carry": 0.99996,
    }
    _, message = argocd.health("TrainingJob", trainingjob(metrics))
    assert message == (
        "training finished; metrics: a_carry=1, b_large=1234.5679, c_tiny_negative=0, "
        "d_integer=3, e_negative=-1.5, +2 more"
    )


def test_sandbox_has_no_string_library_as_in_argo_cd() -> None:
    with pytest.raises(argocd.HealthScriptError, match="string"):
        argocd.run('return {status = string.format("%s", "Healthy")}', {})
    with pytest.raises(argocd.HealthScriptError):
        argocd.run('local s = "Healthy"; return {status = s:sub(1)}', {})


def test_an_invalid_status_reads_unknown_as_in_argo_cd() -> None:
    assert argocd.run('return {status = "Fine", message = "x"}', {}) == (
        "Unknown",
        argocd.INVALID,
    )


def test_a_runaway_script_is_stopped() -> None:
    with pytest.raises(argocd.HealthScriptError, match="too long"):
        argocd.run("while true do end", {})


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_chart_ships_the_same_script_as_argocd_resource_customizations(kind: str) -> None:
    shipped = CHART / "argocd" / "toque.dev" / kind / "health.lua"
    assert shipped.read_text() == argocd.script_path(kind).read_text(), (
        f"cp {argocd.script_path(kind).relative_to(argocd.ROOT)} {shipped.relative_to(argocd.ROOT)}"
    )


def helm_binary() -> str | None:
    tools = os.environ.get("TOQUE_TOOLS_BIN")
    if tools and (pathlib.Path(tools) / "helm").is_file():
        return str(pathlib.Path(tools) / "helm")
    return shutil.which("helm")


def test_chart_renders_the_scripts_under_the_argocd_cm_keys() -> None:
    helm = helm_binary()
    if helm is None:
        pytest.skip("no helm: set TOQUE_TOOLS_BIN (bash hack/build-tools.sh | tail -1)")
    out = subprocess.run(
        [
            helm,
            "template",
            "t",
            str(CHART),
            "--kube-version",
            "1.34.0",
            "--set",
            "argocd.healthChecks.enabled=true",
            "--show-only",
            "templates/argocd-health.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = yaml.safe_load(out)["data"]
    assert data == {
        f"resource.customizations.health.toque.dev_{kind}": argocd.script_path(kind).read_text()
        for kind in argocd.KINDS
    }
