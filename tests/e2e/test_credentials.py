"""The operator reaches MLflow through a URL carrying ``user:password@`` (conftest). Through
a registry outage, a refused source and a promotion, the password never appears in what
users and tools read: resource status and conditions, Events, pod statuses (termination
messages), the operator's log, or the tags MLflow stores."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.e2e.conftest import MLFLOW_PASSWORD
from tests.e2e.helpers import apply, get, wait
from tests.e2e.test_rollout import Logged, logged, plain_modelversion, status, wait_phase
from toque.local import cluster as local
from toque.local import install, services

__all__ = ["logged"]  # the module fixture logging the runs


def _mlflow_texts(uri: str) -> list[str]:
    """Every run, registered model and model version MLflow holds, with their tags."""
    api = f"{uri}/api/2.0/mlflow"
    out = []
    experiments = requests.post(
        f"{api}/experiments/search", json={"max_results": 1000}, timeout=10
    ).json()
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    runs = requests.post(
        f"{api}/runs/search", json={"experiment_ids": ids, "max_results": 1000}, timeout=10
    ).json()
    out.append(json.dumps(runs))
    for what in ("registered-models/search", "model-versions/search"):
        out.append(json.dumps(requests.get(f"{api}/{what}", timeout=10).json()))
    return out


def test_mlflow_credentials_never_reach_status_events_logs_or_tags(
    cluster: local.LocalCluster,
    operator: install.OperatorRelease,
    namespace: str,
    mlflow_server: services.Mlflow,
    logged: Logged,
) -> None:
    ns = namespace
    model = f"creds-{ns}"
    # A registry outage while a version registers: the condition quotes the failure.
    mlflow_server.stop()
    try:
        apply(cluster, ns, plain_modelversion("v1", model, logged.runs["v1"]))

        def unavailable() -> dict[str, Any] | None:
            s = status(cluster, ns, "v1")
            conds = {c["type"]: c for c in s.get("conditions") or []}
            registered = conds.get("Registered") or {}
            return s if registered.get("reason") == "RegistryUnavailable" else None

        outage = wait(cluster, unavailable, "the registry outage in a condition", 60)
        # The failing URL is quoted, its credentials replaced: they were in play.
        assert f"://***@{mlflow_server.host}" in outage["message"], outage["message"]
    finally:
        mlflow_server.start()
    wait_phase(cluster, ns, "v1", "Promoted")
    # A source MLflow does not know: a permanent failure with MLflow's answer in it.
    apply(cluster, ns, plain_modelversion("ghost", model, "f" * 32))
    ghost = wait_phase(cluster, ns, "ghost", "Failed", timeout=60)
    assert ghost["message"]

    texts = [
        cluster.kubectl("get", "trainingjobs,modelversions", "-n", ns, "-o", "json").stdout,
        cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout,
        json.dumps([p.get("status") for p in get(cluster, ns, "pods")["items"]]),
        operator.log(),
        *_mlflow_texts(mlflow_server.uri),
    ]
    leaks = [
        t[max(0, t.find(MLFLOW_PASSWORD) - 200) :][:400] for t in texts if MLFLOW_PASSWORD in t
    ]
    assert not leaks, leaks
