"""Push a dataset → apply the example → a real pod trains a real model, tracked in MLflow.

The pod runs on the node agent's local node (a real process), against the real MinIO and
MLflow servers of the session; credentials reach it from a Secret, as in a cluster.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
from typing import Any

import pytest
import requests
import yaml
from examples.project import make_dataset

from tests.e2e.helpers import apply, events, get, wait
from toque.clients import mlflow_registry
from toque.core import digest
from toque.local import cluster as local
from toque.local import install, services

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "trainingjob.yaml").read_text())


@pytest.fixture(scope="module")
def dataset_ref(minio: services.Minio, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``toque data push`` of the breast-cancer CSV, as a data scientist would run it."""
    directory = tmp_path_factory.mktemp("breast-cancer")
    make_dataset.write(directory)
    ref = minio.push_dataset(directory, "breast-cancer", "toque-data")
    assert ref.startswith("breast-cancer@sha256:"), ref
    return ref


CODE_PATHS = ["examples", "tests/__init__.py", "tests/e2e/__init__.py", "tests/e2e/trainers.py"]


@pytest.fixture(scope="module", autouse=True)
def code_ref(minio: services.Minio) -> str:
    """``toque code push examples tests/e2e/trainers.py … --name breast-cancer-code``: the
    example's spec.code.ref, with the tests' own trainers beside it, as a user's project
    carries its training functions to the pod."""
    ref = minio.push_code(ROOT, CODE_PATHS, "breast-cancer-code", "toque-data")
    assert ref.startswith("breast-cancer-code@sha256:"), ref
    return ref


def head_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def on_local_node(doc: dict[str, Any], **extra_spec: Any) -> dict[str, Any]:
    """The manifest, pinned to the real node (containers from Toque's image); its code,
    the example's and the tests' trainers, comes from the snapshot in spec.code."""
    out = copy.deepcopy(doc)
    spec = out["spec"]
    spec["nodeSelector"] = {"toque.dev/real-node": "true"}
    spec["tolerations"] = [
        {"key": "toque.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ]
    serving = (spec.get("promote") or {}).get("serving")
    if serving is not None:  # the promoted version's servers run for real too
        serving["nodeSelector"] = dict(spec["nodeSelector"])
        serving["tolerations"] = copy.deepcopy(spec["tolerations"])
    spec["env"] = [{"name": "TOQUE_DEPENDENCY_TIMEOUT", "value": "20"}]
    spec.update(extra_spec)
    return out


def wait_phase(
    cluster: local.LocalCluster, ns: str, name: str, want: set[str], timeout: float = 240
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get(cluster, ns, "trainingjob", name)
        return obj if obj and obj.get("status", {}).get("phase") in want else None

    result: dict[str, Any] = wait(cluster, reached, f"{name} in {want}", timeout)
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


@pytest.mark.usefixtures("operator")
def test_example_trains_tracks_gates_and_promotes(
    cluster: local.LocalCluster,
    namespace: str,
    dataset_ref: str,
    code_ref: str,
    monkeypatch: pytest.MonkeyPatch,
    minio: services.Minio,
    mlflow_server: services.Mlflow,
) -> None:
    name = EXAMPLE["metadata"]["name"]
    apply(cluster, namespace, on_local_node(EXAMPLE))
    done = wait_phase(cluster, namespace, name, {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded", done["status"]
    status = done["status"]

    # status: lineage, metrics, gate, ModelVersion
    assert status["datasets"] == [
        {"ref": "breast-cancer:latest", "digest": dataset_ref.split("@", 1)[1]}
    ]
    assert status["metrics"]["val_accuracy"] >= 0.9
    assert status["codeRevision"]
    gate = status["gate"]
    assert gate["passed"] is True and len(gate["results"]) == 4, gate
    assert condition(done, "GatePassed")["status"] == "True"
    assert condition(done, "PodCreated")["status"] == "True"
    mv = get(cluster, namespace, "modelversion", status["modelVersion"])
    assert mv["spec"]["model"] == "breast-cancer-classifier"
    assert mv["spec"]["source"]["trainingJob"] == name
    assert mv["spec"]["source"]["allowUnverified"] is False  # the digest will be checked
    assert mv["spec"]["alias"] == "champion"
    reasons = {e["reason"] for e in events(cluster, namespace, name)}
    assert {"GatePassed", "ModelVersionCreated", "Succeeded"} <= reasons

    # promoted: the first version of the model goes live and the alias moves to it
    def promoted() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "modelversion", status["modelVersion"])
        phase = (obj or {}).get("status", {}).get("phase")
        assert phase not in ("Failed", "RolledBack"), obj["status"]
        return obj if phase == "Promoted" else None

    live = wait(cluster, promoted, "the ModelVersion to be promoted", 180)["status"]
    registered = f"{namespace}.breast-cancer-classifier"
    assert live["registry"] == {"name": registered, "version": "1", "alias": "champion"}
    assert live["modelDigest"] == status["modelDigest"]
    registry = mlflow_registry.Registry(mlflow_server.uri)
    assert registry.alias_version(registered, "champion") == "1"

    # MLflow has the run with params, metrics and lineage tags
    run = requests.get(
        f"{mlflow_server.uri}/api/2.0/mlflow/runs/get",
        params={"run_id": status["mlflowRunId"]},
        timeout=10,
    ).json()["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    logged = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert params["n_estimators"] == "100" and params["max_depth"] == "6"
    assert tags["toque.dataset.train"] == dataset_ref
    assert tags["toque.trainingjob.uid"] == done["metadata"]["uid"]
    assert tags["toque.trainingjob.namespace"] == namespace
    assert tags["toque.code_revision"] == status["codeRevision"]
    # the code came from its snapshot: the pushed version, at the commit it was taken from
    assert tags["toque.code"] == code_ref
    assert status["codeRevision"] == f"git:{head_commit()}"
    assert logged["val_accuracy"] == pytest.approx(status["metrics"]["val_accuracy"])
    assert any(k.startswith("fairness.size_group.") for k in logged)
    assert run["info"]["status"] == "FINISHED"

    # MinIO holds the model; its digest is the one recorded
    s3 = minio.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert any(k.endswith("MLmodel") for k in keys), keys
    import mlflow

    # Through the environment and undone after the test: mlflow.set_tracking_uri or a
    # lasting os.environ change would point later tests' "MLflow is down" cases at this server.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    local_copy = mlflow.artifacts.download_artifacts(artifact_uri=status["modelUri"])
    assert digest.model_digest(pathlib.Path(local_copy)) == status["modelDigest"]


@pytest.mark.usefixtures("operator")
def test_missing_dataset_fails_at_once(cluster: local.LocalCluster, namespace: str) -> None:
    doc = on_local_node(
        EXAMPLE, datasets=[{"ref": "no-such-data:latest", "alias": "train"}], backoffLimit=3
    )
    doc["metadata"]["name"] = "missing-data"
    apply(cluster, namespace, doc)
    done = wait_phase(cluster, namespace, "missing-data", {"Succeeded", "Failed"}, 120)
    assert done["status"]["phase"] == "Failed"
    failed = condition(done, "Failed")
    assert failed["reason"] == "PodFailurePolicy"  # no retries for a permanent error
    assert "no-such-data" in failed["message"]
    assert done["status"]["attempts"] == 1


@pytest.mark.usefixtures("operator", "dataset_ref")
def test_user_code_error_shows_the_traceback(cluster: local.LocalCluster, namespace: str) -> None:
    doc = on_local_node(EXAMPLE, entrypoint="tests.e2e.trainers:explode", backoffLimit=0)
    doc["metadata"]["name"] = "explodes"
    apply(cluster, namespace, doc)
    done = wait_phase(cluster, namespace, "explodes", {"Succeeded", "Failed"}, 120)
    assert done["status"]["phase"] == "Failed"
    message = condition(done, "Failed")["message"]
    assert "ValueError: column 'age' missing" in message
    assert "Traceback" in message and "explode" in message


def test_mlflow_down_is_transient_and_recovers(
    cluster: local.LocalCluster,
    namespace: str,
    dataset_ref: str,
    operator: install.OperatorRelease,
    mlflow_server: services.Mlflow,
) -> None:
    mlflow_server.stop()
    try:
        doc = on_local_node(EXAMPLE, backoffLimit=0)
        doc["metadata"]["name"] = "waits-for-mlflow"
        doc["spec"].pop("promote")
        doc["spec"]["evaluation"].pop("mustBeatChampion")
        apply(cluster, namespace, doc)

        def reported() -> dict[str, Any] | None:
            obj = get(cluster, namespace, "trainingjob", "waits-for-mlflow")
            conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
            deps = conds.get("DependenciesReady")
            return obj if deps and deps["status"] == "False" else None

        obj = wait(cluster, reported, "DependenciesReady=False", timeout=150)
        assert "reach MLflow" in condition(obj, "DependenciesReady")["message"]
        assert obj["status"]["phase"] in ("Pending", "Running")
    finally:
        mlflow_server.start()
    done = wait_phase(cluster, namespace, "waits-for-mlflow", {"Succeeded", "Failed"}, 240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert condition(done, "DependenciesReady")["status"] == "True"
