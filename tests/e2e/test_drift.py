"""Live traffic → drift flagged → exactly one retraining → gate → canary, on the real stack.

A TrainingJob trains a classifier with a string input column and promotes it; a
continuous DriftMonitor watches its serving pods' histograms in Prometheus. Traffic drawn
like the training data, with its true labels fed back, stays healthy over several
evaluations, and the estimated accuracy (no labels) tracks the real one. Traffic with three
numeric features shifted and the categorical one changed is flagged within a few
evaluations, naming exactly those four features in status, an Event and the operator's
metrics; the monitor clones the TrainingJob onto the newest dataset version, once, and that
job trains, passes its gate and rolls out as a canary. A scheduled monitor (a CronJob running
``toque drift check`` over the rows the servers sampled) and the one-off CLI over the same
rows give the same verdicts.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Any

import kubernetes
import pytest
import requests

from tests import argocd
from tests.e2e import drift_data
from tests.e2e.helpers import apply, events, get, spec_managers, wait
from tests.e2e.test_training import on_local_node
from toque.clients import prometheus as prometheus_client
from toque.local import cluster as local
from toque.local import install, services

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = "churn"
MONITOR = "churn-drift"
BUCKET = "toque-data"
CODE_PATHS = ["tests/__init__.py", "tests/e2e/__init__.py", "tests/e2e/trainers.py"]
CODE_PATHS += ["tests/e2e/drift_data.py"]
INTERVAL_S = 10
WINDOW = "40s"
# How close the label-free estimate must stay to the accuracy the fed-back labels give.
CBPE_TOLERANCE = 0.05


def training_job(name: str) -> dict[str, Any]:
    doc = {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "code": {"ref": "churn-code:latest"},
            "entrypoint": "tests.e2e.trainers:churn_classifier",
            "datasets": [{"ref": "churn-data:latest", "alias": "train"}],
            "resources": {"cpu": 1, "memory": "1Gi"},
            "backoffLimit": 0,
            "experiment": "churn",
            "model": {"name": MODEL, "flavor": "sklearn"},
            "evaluation": {"thresholds": [{"metric": "val_accuracy", "op": ">=", "value": 0.75}]},
            "promote": {
                "alias": "champion",
                "serving": {"replicas": 1, "sampleRate": 1.0},
                "rollout": {
                    "steps": [{"setWeight": 50}, {"pause": {"duration": "15s"}}],
                    "analysis": {"interval": "5s", "builtins": {"maxErrorRate": 0.05}},
                },
            },
        },
    }
    return on_local_node(doc)


def monitor(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": name},
        "spec": {
            "model": MODEL,
            "reference": {"trainingData": True},
            "datasetRule": {"driftShare": 0.3},
            "window": WINDOW,
            "minSamples": 300,
            **spec,
        },
    }


class Traffic(threading.Thread):
    """Batches of rows to every ready serving pod of the model, each followed by the rows'
    true labels on the feedback endpoint; ``shifted`` switches the law the rows follow."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str) -> None:
        super().__init__(daemon=True)
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.api = kubernetes.client.DiscoveryV1Api(client)
        self.namespace = namespace
        self.shifted = False
        self.sent = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def endpoints(self) -> list[str]:
        slices = self.api.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={MODEL}"
        )
        out = []
        for s in slices.items:
            port = next((p.port for p in s.ports or [] if p.name == "http"), None)
            for e in s.endpoints or []:
                if port and e.conditions and e.conditions.ready:
                    out += [f"{a}:{port}" for a in e.addresses]
        return sorted(out)

    def run(self) -> None:
        session = requests.Session()
        seed, targets, refreshed = 1000, [], 0.0
        while not self.stopping.is_set():
            if time.monotonic() - refreshed > 1.0:
                targets, refreshed = self.endpoints(), time.monotonic()
            if not targets:
                time.sleep(0.2)
                continue
            seed += 1
            rows = drift_data.draw(25, seed, shifted=self.shifted)
            inputs = [
                {"name": c, "shape": [len(rows)], "datatype": dtype, "data": rows[c].tolist()}
                for c, dtype in [(c, "FP64") for c in drift_data.NUMERIC]
                + [(drift_data.CATEGORICAL, "BYTES")]
            ]
            target = targets[seed % len(targets)]
            base = f"http://{target}/v2/models/{MODEL}"
            try:
                answer = session.post(f"{base}/infer", json={"inputs": inputs}, timeout=10)
                feedback = session.post(
                    f"{base}/feedback",
                    json={"inputs": inputs, "labels": rows[drift_data.LABEL].tolist()},
                    timeout=10,
                )
                for r in (answer, feedback):
                    if r.status_code != 200:
                        self.errors.append(f"{r.url} {r.status_code} {r.text[:200]}")
                self.sent += len(rows)
            except requests.RequestException as error:
                self.errors.append(str(error))
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)


def status(cluster: local.LocalCluster, ns: str, name: str) -> dict[str, Any]:
    obj = get(cluster, ns, "driftmonitor", name)
    return (obj or {}).get("status") or {}


def next_evaluations(
    cluster: local.LocalCluster, ns: str, name: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    """The statuses of the next ``count`` evaluations (each with a new lastEvaluationTime)."""
    seen: list[dict[str, Any]] = []
    last = status(cluster, ns, name).get("lastEvaluationTime")

    def one_more() -> bool:
        nonlocal last
        current = status(cluster, ns, name)
        if current.get("lastEvaluationTime") not in (None, last):
            last = current["lastEvaluationTime"]
            seen.append(current)
        return len(seen) >= count

    wait(cluster, one_more, f"{count} evaluations of {name}", timeout)
    return seen


def retraining_jobs(cluster: local.LocalCluster, ns: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_json(
        "get", "trainingjobs", "-n", ns, "-l", f"toque.dev/drift-monitor={MONITOR}"
    )
    items: list[dict[str, Any]] = out["items"]
    return items


def operator_series(release: install.OperatorRelease, name: str) -> dict[str, float]:
    """``{feature: value}`` of one toque_drift_* feature metric of this monitor."""
    out = {}
    for line in release.metrics().splitlines():
        if line.startswith(f"{name}{{") and f'monitor="{MONITOR}"' in line:
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            out[labels["feature"].strip('"')] = float(line.rsplit(" ", 1)[1])
    return out


def cli_check(
    minio: services.Minio, mlflow_uri: str, run_id: str, namespace: str, version: str
) -> Any:
    env = {
        **os.environ,
        **minio.env(),
        "TOQUE_DATA_BUCKET": BUCKET,
        "MLFLOW_TRACKING_URI": mlflow_uri,
    }
    rules = {"datasetRule": {"driftShare": 0.3}, "minSamples": 300}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "toque.cli.main",
            "drift",
            "check",
            "--reference",
            f"runs:/{run_id}",
            "--current",
            f"samples:{namespace}/{MODEL}/{version}",
            "--window",
            "1h",
            "--rules",
            json.dumps(rules),
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_drift_is_flagged_on_the_shifted_features_and_retrains_once_through_gate_and_canary(
    cluster: local.LocalCluster,
    namespace: str,
    operator: install.OperatorRelease,
    minio: services.Minio,
    mlflow_server: services.Mlflow,
    prometheus: services.Prometheus,
    tmp_path: pathlib.Path,
) -> None:
    ns = namespace
    (tmp_path / "v1").mkdir()
    drift_data.draw(12000, 1).to_csv(tmp_path / "v1" / "churn.csv", index=False)
    minio.push_dataset(tmp_path / "v1", "churn-data", BUCKET)
    minio.push_code(ROOT, CODE_PATHS, "churn-code", BUCKET)

    apply(cluster, ns, training_job("churn-v1"))

    def promoted_version() -> dict[str, Any] | None:
        job = get(cluster, ns, "trainingjob", "churn-v1") or {}
        assert job.get("status", {}).get("phase") != "Failed", job.get("status")
        mv_name = job.get("status", {}).get("modelVersion")
        mv = get(cluster, ns, "modelversion", mv_name) if mv_name else None
        return mv if (mv or {}).get("status", {}).get("phase") == "Promoted" else None

    live = wait(cluster, promoted_version, "churn-v1's version to go live", 400)
    apply(
        cluster,
        ns,
        monitor(
            MONITOR,
            mode="continuous",
            interval=f"{INTERVAL_S}s",
            onDrift={"enabled": True, "dataTag": "latest", "cooldown": "1h"},
            bias={"feature": drift_data.CATEGORICAL, "maxDisparity": 0.95},
        ),
    )
    traffic = Traffic(cluster.kubeconfig, ns)
    traffic.start()
    try:
        # Reference-like traffic: several evaluations, every one healthy. The first windows
        # reach back before the traffic began, so the series the first rows create must
        # read as what they counted (a class seen late was once taken for output drift).
        wait(cluster, lambda: traffic.sent > 1000, "1000 rows of traffic", 120)
        calm = next_evaluations(cluster, ns, MONITOR, 3, 8 * INTERVAL_S)
        for st in calm:
            # In full: a bare dict is cut short in pytest's report, and the cause is in here.
            assert st["phase"] == "Healthy", json.dumps(st, sort_keys=True)
            assert st["driftedFeatures"] == [], st
            assert st["totalFeatures"] == len(drift_data.FEATURES)
            assert st["monitoredFeatures"] == len(drift_data.FEATURES)
            assert st["liveVersion"] == live["metadata"]["name"]
            assert {f["thresholdSource"] for f in st["features"]} == {"default"}
            assert abs(st["estimatedAccuracy"] - st["accuracy"]) <= CBPE_TOLERANCE, st
            # Bias over time: every channel's positive and error rates, and their gaps.
            groups = {g["group"]: g for g in st["bias"]["groups"]}
            assert set(drift_data.CHANNELS) <= set(groups), st["bias"]
            rates = [groups[c]["positiveRate"] for c in drift_data.CHANNELS]
            assert st["bias"]["disparity"] == pytest.approx(max(rates) - min(rates), abs=1e-5)
            assert all(groups[c]["errorRate"] is not None for c in drift_data.CHANNELS)
        assert not retraining_jobs(cluster, ns)
        assert not traffic.errors, traffic.errors[:5]

        # The world moves: new data is pushed, and live traffic follows the new law.
        (tmp_path / "v2").mkdir()
        drift_data.draw(12000, 2, shifted=True).to_csv(tmp_path / "v2" / "churn.csv", index=False)
        newest = minio.push_dataset(tmp_path / "v2", "churn-data", BUCKET)
        traffic.shifted = True
        expected = {*drift_data.SHIFTED_NUMERIC, drift_data.CATEGORICAL}

        def flagged() -> dict[str, Any] | None:
            st = status(cluster, ns, MONITOR)
            return st if st.get("phase") == "Drifted" else None

        drifted = wait(cluster, flagged, "the monitor to flag drift", 8 * INTERVAL_S)
        assert set(drifted["driftedFeatures"]) == expected, drifted
        assert drifted["drifted"] is True
        condition = next(c for c in drifted["conditions"] if c["type"] == "Drifted")
        assert condition["status"] == "True"
        assert all(f in condition["message"] for f in expected), condition
        health, message = argocd.health("DriftMonitor", get(cluster, ns, "driftmonitor", MONITOR))
        assert health == "Degraded" and all(f in message for f in expected), message
        assert spec_managers(cluster, ns, "driftmonitor", MONITOR) == {"kubectl-client-side-apply"}
        warning = [e for e in events(cluster, ns, MONITOR) if e["reason"] == "DriftDetected"]
        assert warning and all(f in warning[-1]["message"] for f in expected), warning
        assert {
            f
            for f, v in operator_series(operator, "toque_drift_feature_drifted").items()
            if v == 1.0
        } == expected
        # ... and in Prometheus, which scrapes the operator: the flags, and accuracy over time.
        server = prometheus_client.Prometheus(prometheus.url)

        def in_prometheus() -> set[str] | None:
            flagged = server.query(f'toque_drift_feature_drifted{{monitor="{MONITOR}"}} == 1')
            names = {s.labels["feature"] for s in flagged}
            return names if names == expected else None

        wait(cluster, in_prometheus, "Prometheus to hold the drifted features", 60)
        history = server.query(f'count_over_time(toque_drift_accuracy{{monitor="{MONITOR}"}}[10m])')
        assert history and history[0].value >= 3, history

        # Exactly one retraining, on the newest data, traceable both ways.
        def retrained() -> dict[str, Any] | None:
            jobs = retraining_jobs(cluster, ns)
            return jobs[0] if jobs else None

        job = wait(cluster, retrained, "the retraining TrainingJob", 4 * INTERVAL_S)
        name = job["metadata"]["name"]
        annotations = job["metadata"]["annotations"]
        assert annotations["toque.dev/triggered-by"] == f"DriftMonitor/{MONITOR}"
        assert annotations["toque.dev/trigger-evaluation"]
        assert status(cluster, ns, MONITOR)["lastRetrainJob"] == name
        assert job["spec"]["entrypoint"] == "tests.e2e.trainers:churn_classifier"
        assert not job["metadata"].get("ownerReferences"), "a monitor must not own its retrains"

        def canary() -> dict[str, Any] | None:
            obj = get(cluster, ns, "trainingjob", name) or {}
            assert obj.get("status", {}).get("phase") != "Failed", obj.get("status")
            mv_name = obj.get("status", {}).get("modelVersion")
            mv = get(cluster, ns, "modelversion", mv_name) if mv_name else None
            weight = (mv or {}).get("status", {}).get("canaryWeight") or 0
            return obj if weight > 0 else None

        trained = wait(cluster, canary, f"{name} to pass its gate and start a canary", 400)
        assert trained["status"]["datasets"][0]["digest"] == newest.split("@", 1)[1]
        assert trained["status"]["gate"]["passed"] is True
        new_version = trained["status"]["modelVersion"]
        wait(
            cluster,
            lambda: (
                (get(cluster, ns, "modelversion", new_version) or {}).get("status", {}).get("phase")
                == "Promoted"
            ),
            f"{new_version} to be promoted",
            240,
        )
        # Traffic returns to the old law, which the new version's reference no longer
        # describes: drift again, yet the cooldown keeps it to one retraining.
        traffic.shifted = False
        again = next_evaluations(cluster, ns, MONITOR, 6, 10 * INTERVAL_S)
        assert again[-1]["liveVersion"] == new_version
        assert again[-1]["phase"] == "Drifted", again[-1]
        assert [j["metadata"]["name"] for j in retraining_jobs(cluster, ns)] == [name]
        assert not traffic.errors, traffic.errors[:5]
    finally:
        traffic.stop()

    # The scheduled path and the one-off CLI over the same sampled rows agree.
    live = get(cluster, ns, "modelversion", new_version)
    run_id = live["status"]["runId"]
    registry_version = live["status"]["registry"]["version"]  # the sampler's folder
    time.sleep(35)  # the sampler writes a file every 30 s: every row is in the store now
    real_node = {
        "nodeSelector": {"toque.dev/real-node": "true"},
        "tolerations": [
            {"key": "toque.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
        ],
    }
    scheduled_monitor = monitor(
        "churn-scheduled", mode="scheduled", schedule="* * * * *", window="1h", checkPod=real_node
    )
    apply(cluster, ns, scheduled_monitor)

    def scheduled() -> dict[str, Any] | None:
        st = status(cluster, ns, "churn-scheduled")
        return st if st.get("lastEvaluationTime") and st.get("features") else None

    by_job = wait(cluster, scheduled, "the scheduled check to report", 180)
    by_cli = cli_check(minio, mlflow_server.uri, run_id, ns, registry_version)
    assert by_job["samples"] == by_cli["samples"] > 0
    assert {f["name"]: f["drifted"] for f in by_job["features"]} == {
        f["name"]: f["drifted"] for f in by_cli["features"]
    }
    assert by_job["drifted"] == by_cli["dataset_drifted"]
