"""Real MinIO, MLflow tracking and Prometheus servers on loopback, for tests and the local stack.

MinIO is the server built from its Go module by ``hack/build-tools.sh``; MLflow is
``mlflow server`` from the virtualenv, with a SQLite backend store and its artifacts in MinIO
(the way a cluster runs it); Prometheus, built by the same script, discovers the local
cluster's pods through its Kubernetes API and scrapes those annotated ``prometheus.io/scrape``.
All are ``processes.Process`` children, so they die with their parent. Called by the
``tests/conftest.py`` and ``tests/e2e/conftest.py`` fixtures and ``toque-local``.
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

import yaml

from toque.local import cluster as local
from toque.local import processes


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


# The local stack's data bucket keeps every object version at least this long.
DATA_RETENTION_DAYS = 7


@dataclasses.dataclass
class Minio:
    """A MinIO server; ``env()`` gives the S3 settings a client or a pod needs."""

    workdir: pathlib.Path
    binary: pathlib.Path
    detached: bool = False
    # With a real node: the pods' bridge address (``node.Network.gateway``), so pods reach it.
    host: str = "127.0.0.1"
    access_key: str = "toque-admin"
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    port: int = 0
    process: processes.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

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
                f"--address={self.host}:{self.port}",
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
        """``toque data push`` as a user runs it; returns the printed ``name@sha256:…``.

        The data bucket is created as the README tells a platform team to: versioned, with
        Object Lock and a default retention, so nothing pushed can be replaced or deleted.
        """
        return self._push(bucket, "data", "push", str(directory), "--name", name, "--quiet")

    def push_code(self, repo: pathlib.Path, paths: list[str], name: str, bucket: str) -> str:
        """``toque code push`` as a user runs it; returns the printed ``name@sha256:…``."""
        return self._push(bucket, "code", "push", "-C", str(repo), "--name", name, *paths)

    def _push(self, bucket: str, *args: str) -> str:
        self.create_bucket(bucket, locked=True)
        env = {**os.environ, **self.env(), "TOQUE_DATA_BUCKET": bucket}
        out = subprocess.run(
            [sys.executable, "-m", "toque.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if out.returncode != 0:
            raise ServiceError(
                f"toque {' '.join(args[:2])} failed ({out.returncode}): {out.stderr}"
            )
        return out.stdout.strip().splitlines()[-1]

    def create_bucket(
        self, name: str, *, locked: bool = False, retention_days: int = DATA_RETENTION_DAYS
    ) -> None:
        """Create ``name`` unless it exists; ``locked``: with versioning and Object Lock.

        A locked bucket also gets a default GOVERNANCE retention of ``retention_days`` (0:
        none): every object version is kept that long, and only a client allowed to bypass
        governance retention can delete it earlier.
        """
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name in existing:
            return
        if not locked:
            client.create_bucket(Bucket=name)
            return
        # Object Lock can only be turned on when a bucket is created; it turns on versioning.
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        if retention_days:
            client.put_object_lock_configuration(
                Bucket=name,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": retention_days}},
                },
            )

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
    def host(self) -> str:
        # Beside MinIO: pods that reach one reach the other.
        return self.minio.host

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

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
                self.host,
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


# The conventional prometheus.io/* pod annotations (Prometheus' example Kubernetes config, the
# community Helm chart), which Toque's serving pods carry: keep the annotated Running pods,
# scrape <pod IP>:<port annotation><path annotation>, label the series with namespace and pod.
_POD_RELABELING: list[dict[str, Any]] = [
    {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": "true",
    },
    # Pending pods have no IP yet; finished ones left theirs behind.
    {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "keep", "regex": "Running"},
    {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"],
        "regex": "(https?)",
        "target_label": "__scheme__",
    },
    {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
        "regex": "(.+)",
        "target_label": "__metrics_path__",
    },
    {
        "source_labels": [
            "__meta_kubernetes_pod_ip",
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
        ],
        # IPv4 pod IPs only (the node agent hands out 127.x); IPv6 would need brackets.
        "regex": r"([^:;]+);(\d+)",
        "replacement": "$1:$2",
        "target_label": "__address__",
    },
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    {
        "source_labels": ["__meta_kubernetes_pod_label_toque_dev_model"],
        "regex": "(.+)",
        "target_label": "toque_model",
    },
]
SERVING_JOB = "toque-serving"


@dataclasses.dataclass
class Prometheus:
    """A Prometheus server scraping the annotated pods of the cluster behind ``kubeconfig``.

    Without a kubeconfig it scrapes only itself (job ``prometheus``), which is enough to test
    a client. ``url`` is the HTTP API's base; ``promtool``, when given, checks the generated
    configuration before the server starts.
    """

    workdir: pathlib.Path
    binary: pathlib.Path
    kubeconfig: pathlib.Path | None = None
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    promtool: pathlib.Path | None = None
    # (host:port, extra labels) scraped as they are, e.g. a model server run outside a pod.
    static_targets: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    detached: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    process: processes.Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> pathlib.Path:
        return self.workdir / "prometheus.yml"

    def config(self) -> dict[str, Any]:
        """The generated ``prometheus.yml`` as a dict."""
        jobs: list[dict[str, Any]] = [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{self.host}:{self.port}"]}],
            }
        ]
        if self.static_targets:
            jobs.append(
                {
                    "job_name": "static",
                    "static_configs": [
                        {"targets": [target], "labels": dict(labels)}
                        for target, labels in self.static_targets
                    ],
                }
            )
        if self.kubeconfig is not None:
            jobs.append(
                {
                    "job_name": SERVING_JOB,
                    # A serving pod's own `job`/`instance` labels must not override ours.
                    "honor_labels": False,
                    "kubernetes_sd_configs": [
                        {"role": "pod", "kubeconfig_file": str(self.kubeconfig)}
                    ],
                    "relabel_configs": _POD_RELABELING,
                }
            )
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": jobs,
        }

    def check_config(self) -> str:
        """``promtool check config`` on the written file; raises ``ServiceError`` if invalid."""
        if self.promtool is None:
            raise ServiceError("no promtool given")
        result = subprocess.run(
            [str(self.promtool), "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"promtool rejected {self.config_path}:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def start(self, timeout: float = 60) -> None:
        self.port = self.port or local.free_port()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if self.promtool is not None:
            self.check_config()
        self.process = processes.Process(
            "prometheus",
            [
                str(self.binary),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address={self.host}:{self.port}",
                # /-/reload after rewriting the file; /-/quit.
                "--web.enable-lifecycle",
                "--log.level=info",
            ],
            self.workdir / "logs" / "prometheus.log",
            env=dict(os.environ),
            cwd=self.workdir,
            die_with_parent=not self.detached,
        )
        _wait_ok(self.process, f"{self.url}/-/ready", timeout)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None
