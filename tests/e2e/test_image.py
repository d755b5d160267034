"""Toque's image, built from the repository's Dockerfile with buildah on a Debian base made
here (hack/build-image.sh), run in real containers by podman with runc: the non-root user,
the read-only root, no build tools, and the model server loading a model from the session's
MLflow and MinIO and answering predictions from inside the container.

Containers use the host's network namespace (``--network host``) so that they reach the
loopback MLflow and MinIO; the test sends its requests to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.test_rollout import Logged, logged
from toque.local import cluster as local
from toque.local import services

ROOT = pathlib.Path(__file__).resolve().parents[2]
__all__ = ["logged"]  # the module fixture logging the runs

# cgroups here are v1/hybrid (crun refuses them) and the process lacks CAP_SYS_RESOURCE, so
# rlimits above the host's hard limits are refused: runc, cgroupfs and explicit limits.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000"]
# What the operator's pods get: read-only root, writable /tmp (an emptyDir), no privileges.
RESTRICTED = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=512m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@pytest.fixture(scope="module")
def image() -> str:
    built = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-image.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def run(
    image: str, *command: str, network: str = "none", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    settings = [f"--env={k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(
        [
            *PODMAN,
            "run",
            "--rm",
            "--network",
            network,
            *LIMITS,
            *RESTRICTED,
            *settings,
            image,
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_image_runs_as_a_non_root_user_with_the_ml_stack_and_no_build_tools(
    image: str,
) -> None:
    script = (
        "id -u; python3 -c 'import mlflow, sklearn, toque.serving.app, toque.trainer.run; "
        "print(mlflow.__version__)'; command -v pip gcc cc || echo none; "
        "touch /opt/toque/x 2>/dev/null && echo wrote || echo read-only; "
        "touch /tmp/x && echo tmp-writable"
    )
    done = run(image, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    uid, version, tools, root, tmp = done.stdout.split()
    assert uid == "65532"
    pinned = next(
        line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.startswith("mlflow==")
    )
    assert version == pinned
    assert tools == "none"
    assert (root, tmp) == ("read-only", "tmp-writable")


def test_the_image_entrypoints_answer(image: str) -> None:
    for command in ("operator", "train", "serve", "data"):
        done = run(image, "toque", command, "--help")
        assert done.returncode == 0 and "usage" in done.stdout, (command, done.stderr)


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"toque-e2e-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run([*PODMAN, "rm", "-f", "-t", "2", name], capture_output=True, check=False)


def test_the_image_serves_a_model_from_mlflow_with_its_digest_checked(
    image: str,
    container_name: str,
    logged: Logged,
    mlflow_server: services.Mlflow,
    minio: services.Minio,
) -> None:
    from toque.clients import mlflow_registry

    run_id = logged.runs["v1"]
    model_digest = mlflow_registry.Registry(mlflow_server.uri).run_tags(run_id)[
        "toque.model_digest"
    ]
    port = local.free_port()
    env = {**minio.env(), "MLFLOW_TRACKING_URI": mlflow_server.uri}
    started = subprocess.run(
        [
            *PODMAN,
            "run",
            "-d",
            "--name",
            container_name,
            "--network",
            "host",
            *LIMITS,
            *RESTRICTED,
            *(f"--env={k}={v}" for k, v in env.items()),
            image,
            "toque",
            "serve",
            "--model-uri",
            f"runs:/{run_id}/model",
            "--model-name",
            "image-e2e",
            "--version",
            "1",
            "--expected-digest",
            model_digest,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        logs = subprocess.run([*PODMAN, "logs", container_name], capture_output=True, text=True)
        raise AssertionError(
            f"the server never got ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
        )
    body = {"dataframe_split": {"columns": logged.columns, "data": logged.rows[:5]}}
    answer = requests.post(
        f"{base}/invocations",
        data=json.dumps(body),
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5
    inspect = subprocess.run(
        [*PODMAN, "inspect", "--format", "{{.Config.User}}", container_name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert inspect.stdout.strip() == "65532:65532"


def test_the_image_refuses_a_model_whose_digest_differs(
    image: str, logged: Logged, mlflow_server: services.Mlflow, minio: services.Minio
) -> None:
    env = {**minio.env(), "MLFLOW_TRACKING_URI": mlflow_server.uri}
    done = run(
        image,
        "toque",
        "serve",
        "--model-uri",
        f"runs:/{logged.runs['v1']}/model",
        "--model-name",
        "image-e2e",
        "--version",
        "1",
        "--expected-digest",
        "sha256:" + "0" * 64,
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        network="host",
        env=env,
    )
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "digest" in (done.stdout + done.stderr).lower()
