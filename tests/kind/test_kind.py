"""A smoke test on a kind cluster (needs Docker; run with `make test-kind`).

Builds the Toque image, loads it into kind, runs the operator locally against the cluster
and checks that a TrainingJob whose container exits 0 ends Succeeded and one that exits 1
ends Failed. It is not the full example: no MinIO or MLflow runs in the kind cluster. Not
run where Docker is missing: `make test-kind` says so and exits non-zero instead.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.kind
ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "toque:kind-test"


@pytest.fixture(scope="session")
def kind(kind_cluster: Any) -> Any:
    subprocess.run(["docker", "build", "-t", IMAGE, str(ROOT)], check=True)
    kind_cluster.load_docker_image(IMAGE)
    kind_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    return kind_cluster


@pytest.fixture(scope="session")
def operator(kind: Any) -> Iterator[None]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kind.kubeconfig_path),
        "TOQUE_METRICS_PORT": "0",
        "TOQUE_RUNTIME_IMAGE": IMAGE,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "toque.cli.main", "operator", "--standalone", "--liveness="], env=env
    )
    yield
    proc.terminate()
    proc.wait(timeout=20)


def wait_phase(kind: Any, name: str, want: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kind.kubectl("get", "tj", name, "-o", "jsonpath={.status.phase}")
        if out.strip() == want:
            return
        time.sleep(2)
    raise AssertionError(f"{name} never reached {want}")


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (1, "Failed")])
def test_trainingjob_phase_follows_a_real_containers_exit_code(
    kind: Any, code: int, phase: str
) -> None:
    name = f"kind-exit-{code}"
    doc = {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "command": ["python", "-c", f"raise SystemExit({code})"],
            "backoffLimit": 0,
            "resources": {"cpu": "100m", "memory": "128Mi"},
        },
    }
    kind.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    wait_phase(kind, name, phase)
