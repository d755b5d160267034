"""The data scientist's loop on the real stack, from a project `toque init` scaffolds.

The project is rendered, committed and its data written as its README says; then the steps
its GitHub workflow runs (everything but the GitHub calls): `toque submit` trains through
Toque (exit 0 when the gate passes, 4 when it fails, 1 when the trainer crashes), `toque
report` renders the pull-request comment from the cluster and MLflow, and `toque reproduce`
re-runs the promoted version from its lineage with identical metrics; `toque status` shows
them all in one table.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

from tests import argocd
from tests.e2e.helpers import get, spec_managers, wait
from tests.e2e.test_training import on_local_node
from toque.api import constants
from toque.core import exitcodes
from toque.local import cluster as local
from toque.local import install, services

PROJECT = "demo"


def toque(
    env: dict[str, str], cwd: pathlib.Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toque.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def git(root: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def deploy(root: pathlib.Path, **changes: Any) -> None:
    """The project's TrainingJob, on the real node, with a short canary, plus ``changes``
    to its spec; committed, as a data scientist's branch would carry it."""
    path = root / "deploy" / "trainingjob.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["promote"]["serving"]["replicas"] = 1
    doc["spec"]["promote"]["rollout"] = {
        "steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}],
        "analysis": {"interval": "5s", "builtins": {"maxErrorRate": 0.05}},
    }
    doc["spec"]["backoffLimit"] = 0
    doc["spec"].update(changes)
    path.write_text(yaml.safe_dump(on_local_node(doc), sort_keys=False))
    git(root, "commit", "-qam", f"deploy: {sorted(changes) or 'the local stack'}")


@pytest.fixture(scope="module")
def env(
    cluster: local.LocalCluster, minio: services.Minio, mlflow_server: services.Mlflow
) -> dict[str, str]:
    return {
        **os.environ,
        **minio.env(),
        "TOQUE_DATA_BUCKET": "toque-data",
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "KUBECONFIG": str(cluster.kubeconfig),
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> pathlib.Path:
    """`toque init demo`, committed, with its data written by `make data`'s command."""
    root = tmp_path_factory.mktemp("projects") / PROJECT
    done = toque(env, root.parent, "init", PROJECT, "--dest", str(root), "--quiet")
    assert done.returncode == 0, done.stderr
    git(root, "init", "-q")
    git(root, "config", "user.email", "ds@example.com")
    git(root, "config", "user.name", "A data scientist")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "toque init")
    data = subprocess.run(
        [sys.executable, "-m", f"{PROJECT}.dataset"], cwd=root, capture_output=True, text=True
    )
    assert data.returncode == 0, data.stderr
    assert any(p.is_file() and not p.name.startswith(".") for p in (root / "data/raw").iterdir())
    return root


def submit(env: dict[str, str], root: pathlib.Path, ns: str, *extra: str) -> tuple[int, str, str]:
    done = toque(env, root, "submit", str(root), "-n", ns, "--timeout", "420", *extra)
    return done.returncode, done.stdout.strip(), done.stderr


def test_scaffolded_project_submits_reports_and_reproduces_through_the_stack(
    cluster: local.LocalCluster,
    namespace: str,
    operator: install.OperatorRelease,
    env: dict[str, str],
    project: pathlib.Path,
    mlflow_server: services.Mlflow,
    tmp_path: pathlib.Path,
) -> None:
    ns = namespace
    deploy(project)

    # A passing run: trained on the pushed data, gate passed, promoted.
    code, name, log = submit(env, project, ns)
    assert code == exitcodes.OK, log
    job = get(cluster, ns, "trainingjob", name)
    status = job["status"]
    assert status["phase"] == "Succeeded" and status["gate"]["passed"] is True
    assert job["spec"]["code"]["ref"].startswith(f"{PROJECT}-code@sha256:")
    assert job["spec"]["datasets"][0]["ref"].startswith(f"{PROJECT}-data@sha256:")
    head = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert status["codeRevision"] == f"git:{head}"
    assert "val_accuracy" in log  # metrics were shown as they arrived
    version = status["modelVersion"]
    wait(
        cluster,
        lambda: (
            (get(cluster, ns, "modelversion", version) or {}).get("status", {}).get("phase")
            == "Promoted"
        ),
        f"{version} to be promoted",
        240,
    )

    # The pull-request comment: numbers as MLflow holds them, plots that open.
    figures = tmp_path / "figures"
    report = toque(
        env,
        project,
        "report",
        name,
        "-n",
        ns,
        "--format",
        "json",
        "--plots-dir",
        str(figures),
    )
    assert report.returncode == 0, report.stderr
    facts = json.loads(report.stdout)
    run = requests.get(
        f"{mlflow_server.uri}/api/2.0/mlflow/runs/get",
        params={"run_id": status["mlflowRunId"]},
        timeout=10,
    ).json()["run"]
    logged = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    reported = {m["name"]: m["value"] for m in facts["metrics"]}
    for key in ("val_accuracy", "val_f1", "train_accuracy"):
        assert reported[key] == pytest.approx(logged[key], rel=1e-12), key
    markdown = toque(env, project, "report", name, "-n", ns, "--plots-dir", str(figures))
    assert markdown.returncode == 0, markdown.stderr
    assert repr(logged["val_accuracy"]) in markdown.stdout  # exactly as MLflow holds it
    pngs = sorted(figures.glob("*.png"))
    assert len(pngs) >= 3, pngs
    for png in pngs:
        with Image.open(png) as image:
            assert image.width > 100 and image.height > 100

    # The gate fails: exit 4, and no ModelVersion.
    deploy(
        project, evaluation={"thresholds": [{"metric": "val_accuracy", "op": ">=", "value": 0.999}]}
    )
    code, failed_gate, log = submit(env, project, ns)
    assert code == exitcodes.GATE_FAILED, log
    assert not get(cluster, ns, "trainingjob", failed_gate)["status"].get("modelVersion")

    # The trainer crashes: exit 1, with the reason shown.
    code, crashed, log = submit(env, project, ns, "--param", "n_estimators=-1")
    assert code == exitcodes.FAILED, log
    assert get(cluster, ns, "trainingjob", crashed)["status"]["phase"] == "Failed"

    # What Argo CD would show for these objects, from their real statuses; and the operator
    # never wrote a user's spec, so a GitOps tool sees no drift it did not cause.
    mv = get(cluster, ns, "modelversion", version)
    assert argocd.health("TrainingJob", get(cluster, ns, "trainingjob", name))[0] == "Healthy"
    assert argocd.health("ModelVersion", mv)[0] == "Healthy"
    degraded = argocd.health("TrainingJob", get(cluster, ns, "trainingjob", crashed))
    assert degraded[0] == "Degraded" and degraded[1], degraded
    gate_status, gate_message = argocd.health(
        "TrainingJob", get(cluster, ns, "trainingjob", failed_gate)
    )
    assert gate_status == "Healthy" and "gate" in gate_message
    for job_name in (name, failed_gate, crashed):
        assert spec_managers(cluster, ns, "trainingjob", job_name) == {"toque-submit"}
    # The ModelVersion is the operator's own object (the run's promote template): one writer.
    assert spec_managers(cluster, ns, "modelversion", version) == {constants.FIELD_MANAGER}

    # One table of the namespace, plain when piped: each run, the version and its phase.
    table = toque(env, project, "status", "-n", ns)
    assert table.returncode == 0, table.stderr
    assert "\x1b[" not in table.stdout  # no colour codes off a terminal
    for shown in (name, failed_gate, crashed, version, "Promoted", "Failed"):
        assert shown in table.stdout, table.stdout

    # The promoted version, re-run from its lineage: the same metrics.
    again = toque(env, project, "reproduce", version, "-n", ns, "--timeout", "420")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "identical" in again.stdout.lower()
