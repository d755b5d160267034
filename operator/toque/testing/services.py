"""Real MinIO and MLflow tracking servers on loopback, for tests and the local stack.

MinIO is the server built from its Go module by ``hack/build-tools.sh``; MLflow is
``mlflow server`` from the virtualenv, with a SQLite backend store and its artifacts in MinIO
(the way a cluster runs it). Both are ``processes.Process`` children, so they die with their
parent. Called by ``tests/conftest.py`` fixtures and ``toque-local``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from toque.testing import cluster as local
from toque.testing import processes


class ServiceError(RuntimeError):
    """A server did not come up; the message carries its log tail."""


def _wait_ok(proc: processes.Process, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServiceError(f"{proc.name} exited:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise ServiceError(f"{proc.name} not healthy at {url} after {timeout}s:\n{proc.tail()}")


@dataclasses.dataclass
class Minio:
    """A MinIO server; ``env()`` gives the S3 settings a client or a pod needs."""

    workdir: pathlib.Path
    binary: pathlib.Path
    detached: bool = False
    access_key: str = "toque-admin"
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    port: int = 0
    process: processes.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.port = self.port or local.free_port()
        data = self.workdir / "minio-data"
        data.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        self.process = processes.Process(
            "minio",
            [
                str(self.binary),
                "server",
                str(data),
                f"--address=127.0.0.1:{self.port}",
                f"--console-address=127.0.0.1:{local.free_port()}",
                "--quiet",
            ],
            self.workdir / "logs" / "minio.log",
            env=env,
            die_with_parent=not self.detached,
        )
        _wait_ok(self.process, f"{self.endpoint}/minio/health/live", timeout)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "TOQUE_S3_ENDPOINT": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        """A boto3 S3 client with the root credentials (for setup and checks, not pods)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def push_dataset(self, directory: pathlib.Path, name: str, bucket: str) -> str:
        """``toque data push`` as a user runs it; returns the printed ``name@sha256:…``."""
        env = {**os.environ, **self.env(), "TOQUE_DATA_BUCKET": bucket}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "toque.cli.main",
                "data",
                "push",
                str(directory),
                "--name",
                name,
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def create_bucket(self, name: str) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None


@dataclasses.dataclass
class Mlflow:
    """An MLflow tracking server with its artifacts in MinIO."""

    workdir: pathlib.Path
    minio: Minio
    detached: bool = False
    bucket: str = "mlflow"
    port: int = 0
    process: processes.Process | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        self.port = self.port or local.free_port()
        self.minio.create_bucket(self.bucket)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        db = self.workdir / "mlflow.db"
        mlflow_bin = shutil.which("mlflow", path=str(pathlib.Path(sys.executable).parent))
        if mlflow_bin is None:
            raise ServiceError("mlflow is not installed in this virtualenv")
        env = {**os.environ, **self.minio.env()}
        # `mlflow server` starts uvicorn/gunicorn by name, so the venv's bin must be on PATH.
        env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.process = processes.Process(
            "mlflow",
            [
                mlflow_bin,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{db}",
                "--artifacts-destination",
                f"s3://{self.bucket}/artifacts",
                "--workers",
                "1",
            ],
            self.workdir / "logs" / "mlflow.log",
            env=env,
            die_with_parent=not self.detached,
        )
        _wait_ok(self.process, f"{self.uri}/health", timeout)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None
