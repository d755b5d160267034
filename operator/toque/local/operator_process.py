"""Runs the operator as a local process under the chart's ServiceAccount (tests, local stack).

The chart's RBAC is rendered with the real ``helm template`` and applied with ``kubectl``;
the operator then authenticates with a TokenRequest token of that ServiceAccount, so a
missing permission fails the tests exactly as it would fail in a cluster.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
import urllib.error
import urllib.request

import yaml

from toque.local import cluster as local
from toque.local import processes

NAMESPACE = "toque-system"
SERVICE_ACCOUNT = "toque-operator"


def install_rbac_and_kubeconfig(
    c: local.LocalCluster,
    chart: pathlib.Path,
    release: str = "toque",
    namespace: str = NAMESPACE,
    watch_namespaces: list[str] | None = None,
) -> pathlib.Path:
    """Apply the chart's ServiceAccount and RBAC; return a kubeconfig with its token.

    With ``watch_namespaces`` the chart renders one Role per namespace instead of the
    ClusterRole (``operator.watchNamespaces``), as a platform team installing it that way.
    """
    c.kubectl("create", "namespace", namespace, check=False)
    values = []
    if watch_namespaces:
        values = ["--set", "operator.watchNamespaces={" + ",".join(watch_namespaces) + "}"]
    rendered = c.helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        *values,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    )
    # No -n: in namespaced mode the Roles live in the watched namespaces, not the release's.
    c.kubectl("apply", "-f", "-", stdin=rendered)
    account = service_account(release)
    token = c.kubectl("create", "token", account, "-n", namespace, "--duration=24h").stdout.strip()
    admin = yaml.safe_load(c.kubeconfig.read_text())
    admin["users"] = [{"name": account, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = account
    path = c.workdir / f"{release}-operator.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    path.chmod(0o600)
    return path


def service_account(release: str) -> str:
    """The chart's ServiceAccount name for a release (``<release>-operator``)."""
    return f"{release}-operator"


class Operator:
    """The operator process; ``kill`` simulates a crash, ``start`` brings it back."""

    def __init__(
        self,
        c: local.LocalCluster,
        kubeconfig: pathlib.Path,
        detached: bool = False,
        runtime_image: str | None = None,
        env: dict[str, str] | None = None,
        namespaces: list[str] | None = None,
    ) -> None:
        self.namespaces = list(namespaces or [])
        self.runtime_image = runtime_image
        self.extra_env = env or {}
        self.cluster = c
        self.detached = detached
        self.kubeconfig = kubeconfig
        self.metrics_port = local.free_port()
        self.health_port = local.free_port()
        self.process: processes.Process | None = None
        self.starts = 0

    @property
    def log_path(self) -> pathlib.Path:
        suffix = f"-{self.namespaces[0]}" if self.namespaces else ""
        return self.cluster.workdir / "logs" / f"operator{suffix}.log"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TOQUE_METRICS_ADDR": "127.0.0.1",
            **({"TOQUE_RUNTIME_IMAGE": self.runtime_image} if self.runtime_image else {}),
            **self.extra_env,
        }
        log = self.log_path
        self.process = processes.Process(
            "operator",
            [
                sys.executable,
                "-m",
                "toque.cli.main",
                "operator",
                "--standalone",
                f"--metrics-port={self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                *(f"--namespace={ns}" for ns in self.namespaces),
            ],
            log,
            env=env,
            die_with_parent=not self.detached,
        )
        self.cluster.wait_for(self._healthy, timeout, "the operator's liveness endpoint")

    def _healthy(self) -> bool:
        if self.process is None or not self.process.alive():
            tail = self.process.tail() if self.process else ""
            raise local.ClusterError(f"operator exited:\n{tail}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        if self.process:
            self.process.kill()
            self.process = None

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def log(self) -> str:
        return self.process.tail(200) if self.process else ""

    def wait_quiet(self, seconds: float = 1.0) -> None:
        time.sleep(seconds)
