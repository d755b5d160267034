"""A project made by `toque init` works as rendered: its own tests pass (run with this
virtualenv's Python, which has Toque), its local runner trains a model that meets the gate's
threshold, its deploy/ manifests are valid Toque resources for the project, and actionlint
passes its GitHub workflow and the example's (examples/github/train.yml).

actionlint comes from $TOQUE_ACTIONLINT, else from hack/build-actionlint.sh (a cached Go
build; `make lint` runs it first).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pydantic
import pytest
import yaml

from toque import scaffold
from toque.api import constants, driftmonitor, modelversion, trainingjob
from toque.workflow import project as projects

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS: dict[str, type[pydantic.BaseModel]] = {
    "trainingjob.yaml": trainingjob.TrainingJob,
    "modelversion.yaml": modelversion.ModelVersion,
    "driftmonitor.yaml": driftmonitor.DriftMonitor,
}
CCDS_FOLDERS = (
    "data/raw",
    "data/interim",
    "data/processed",
    "data/external",
    "models",
    "notebooks",
    "references",
    "reports/figures",
)


@pytest.fixture(scope="module", params=scaffold.DATA_SOURCES)
def project(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> projects.Project:
    dest = tmp_path_factory.mktemp("init") / "churn-model"
    scaffold.render(dest, "churn-model", data_from=request.param, quiet=True)
    return projects.load(dest)


def _run(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_the_projects_own_tests_pass(project: projects.Project) -> None:
    done = _run(project.root, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout


def test_the_tree_has_every_ccds_folder_and_the_package(project: projects.Project) -> None:
    for folder in CCDS_FOLDERS:
        assert (project.root / folder).is_dir(), folder
    for module in ("config", "dataset", "features", "plots", "modeling/train", "modeling/predict"):
        assert (project.root / project.package / f"{module}.py").is_file(), module


def test_deploy_manifests_are_valid_resources_of_the_project(project: projects.Project) -> None:
    docs = {}
    for file, model in MODELS.items():
        doc = yaml.safe_load((project.root / "deploy" / file).read_text())
        assert doc["apiVersion"] == constants.API_VERSION
        assert doc["kind"] == model.__name__
        assert doc["metadata"]["name"].startswith(project.name)
        model.model_validate({"spec": doc["spec"]})
        docs[file] = doc["spec"]
    job = docs["trainingjob.yaml"]
    assert job["code"]["ref"] == f"{project.code}:latest"
    assert [d["ref"] for d in job["datasets"]] == [f"{d.name}:latest" for d in project.datasets]
    assert [d["alias"] for d in job["datasets"]] == [d.alias for d in project.datasets]
    assert job["entrypoint"] == f"{project.package}.modeling.train:train"
    assert job["model"]["name"] == project.name
    assert docs["modelversion.yaml"]["model"] == project.name
    assert docs["driftmonitor.yaml"]["model"] == project.name


def _train_locally(project: projects.Project) -> dict[str, float]:
    """``make data train-local``: the metrics the local runner printed."""
    made = _run(project.root, "-m", f"{project.package}.dataset")
    assert made.returncode == 0, made.stderr
    trained = _run(project.root, "-m", f"{project.package}.modeling.local")
    assert trained.returncode == 0, trained.stderr
    assert (project.root / "models/model.joblib").stat().st_size > 0
    return {
        name: float(value) for name, value in (line.split() for line in trained.stdout.splitlines())
    }


def test_the_local_runner_trains_the_default_model_past_its_gate(
    tmp_path: pathlib.Path,
) -> None:
    project = projects.load(scaffold.render(tmp_path / "bc", "bc", quiet=True))
    metrics = _train_locally(project)
    spec = yaml.safe_load((project.root / "deploy/trainingjob.yaml").read_text())["spec"]
    threshold = spec["evaluation"]["thresholds"][0]
    assert metrics[threshold["metric"]] >= threshold["value"]
    gap = spec["evaluation"]["maxTrainValidationGap"]
    assert metrics[f"train_{gap['metric']}"] - metrics[f"val_{gap['metric']}"] <= gap["max"]


def test_without_a_data_source_dataset_py_asks_for_one(tmp_path: pathlib.Path) -> None:
    dest = scaffold.render(tmp_path / "own", "own", data_from="none", quiet=True)
    made = _run(dest, "-m", "own.dataset")
    assert made.returncode != 0
    assert "read your raw data here" in made.stderr


def test_the_workflow_is_yaml_that_submits_reports_and_comments(
    project: projects.Project,
) -> None:
    workflow = yaml.safe_load((project.root / ".github/workflows/train.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    assert "pull_request" in workflow[True]
    steps = workflow["jobs"]["train"]["steps"]
    commands = "\n".join(str(s.get("run", "")) for s in steps)
    for needed in ("toque submit", "toque report", "--format markdown", "gh pr comment"):
        assert needed in commands, needed
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)


def _actionlint() -> str:
    given = os.environ.get("TOQUE_ACTIONLINT")
    if given:
        return given
    if shutil.which("go") is None:
        if os.environ.get("CI"):
            pytest.fail("no actionlint in CI: set TOQUE_ACTIONLINT or put Go on PATH")
        pytest.skip("no actionlint: set TOQUE_ACTIONLINT, or put Go on PATH to build it")
    built = subprocess.run(
        ["bash", str(ROOT / "hack/build-actionlint.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, built.stderr
    return built.stdout.strip().splitlines()[-1]


def test_actionlint_passes_the_rendered_and_the_example_workflow(
    project: projects.Project,
) -> None:
    workflows = [
        project.root / ".github/workflows/train.yml",
        ROOT / "examples/github/train.yml",
    ]
    done = subprocess.run(
        [_actionlint(), "-no-color", *map(str, workflows)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
