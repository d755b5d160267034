"""TrainingJob → Job against the real control plane and the operator installed by helm.

Two kinds of node, said in each test: **real** (``real_run``: a container from Toque's image
on the real node, whose exit code, output and timing are real) for a run's life — failure,
permanent failure, deadline, deletion, an operator crash mid-run; **kwok** (``tj``: pods
whose end kwok simulates) where the test is about scheduling and the Job's shape — GPU
placement, unschedulable runs, admission, suspension, spec edits, metrics.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import apply, events, get, wait
from toque.local import cluster as local
from toque.local import install

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("operator")


def tj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "pkg.train:main",
            "resources": {"cpu": "1", "memory": "1Gi"},
            **spec,
        },
    }


def real_run(name: str, script: str, **spec: Any) -> dict[str, Any]:
    """A run whose pod is a container on the real node running ``script`` with python."""
    doc = tj(
        name,
        command=["python", "-c", script],
        resources={"cpu": "100m", "memory": "256Mi"},
        nodeSelector={local.REAL_NODE_LABEL: "true"},
        tolerations=[{"key": local.REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        **spec,
    )
    del doc["spec"]["entrypoint"]
    return doc


def finishing_after(seconds: int) -> dict[str, Any]:
    """Pod metadata that makes kwok's simulated kubelet end the pod after ``seconds``."""
    value = f"{seconds}s"
    return {
        "annotations": {
            "pod-complete.stage.kwok.x-k8s.io/delay": value,
            "pod-complete.stage.kwok.x-k8s.io/jitter-delay": value,
        }
    }


def phase(cluster: local.LocalCluster, ns: str, name: str) -> str | None:
    obj = get(cluster, ns, "trainingjob", name)
    return (obj or {}).get("status", {}).get("phase")


def wait_phase(
    cluster: local.LocalCluster, ns: str, name: str, want: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get(cluster, ns, "trainingjob", name)
        return obj if obj and obj.get("status", {}).get("phase") == want else None

    result: dict[str, Any] = wait(cluster, reached, f"{ns}/{name} to be {want}", timeout)
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def jobs_of(cluster: local.LocalCluster, ns: str, uid: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_json("get", "jobs", "-n", ns, "-l", f"toque.dev/trainingjob-uid={uid}")
    items: list[dict[str, Any]] = out["items"]
    return items


def pods_of(cluster: local.LocalCluster, ns: str, uid: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_json("get", "pods", "-n", ns, "-l", f"toque.dev/trainingjob-uid={uid}")
    items: list[dict[str, Any]] = out["items"]
    return items


def test_example_runs_to_success_with_the_exact_job(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """kwok: the Job the example becomes, field by field (test_training runs it for real)."""
    cluster.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "trainingjob.yaml"))
    example = yaml.safe_load((ROOT / "examples" / "trainingjob.yaml").read_text())
    name = example["metadata"]["name"]
    job = wait(cluster, lambda: get(cluster, namespace, "job", name), "the Job")
    owner = get(cluster, namespace, "trainingjob", name)

    ref = job["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("TrainingJob", name, owner["metadata"]["uid"])
    assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    spec = job["spec"]
    assert spec["backoffLimit"] == example["spec"]["backoffLimit"]
    assert spec["activeDeadlineSeconds"] == example["spec"]["activeDeadlineSeconds"]
    assert spec["ttlSecondsAfterFinished"] == example["spec"]["ttlSecondsAfterFinished"]
    assert spec["suspend"] is False
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert container["args"] == ["--entrypoint", example["spec"]["entrypoint"]]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    done = wait_phase(cluster, namespace, name, "Succeeded")
    status = done["status"]
    assert status["jobName"] == name and status["attempts"] == 1
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert status["startTime"] and status["completionTime"]
    assert condition(done, "Succeeded")["status"] == "True"
    assert condition(done, "JobCreated")["status"] == "True"
    # the namespace enforces the restricted Pod Security Standard: the pod was admitted
    pod = pods_of(cluster, namespace, owner["metadata"]["uid"])[0]
    assert pod["status"]["phase"] == "Succeeded"
    reasons = {e["reason"] for e in events(cluster, namespace, name)}
    assert {"JobCreated", "Succeeded"} <= reasons
    table = cluster.kubectl("get", "tj", "-n", namespace).stdout
    assert re.search(rf"{name}\s+Succeeded\s+breast-cancer-classifier\s+1\s+{name}", table)


def test_failing_pod_fails_the_run_with_the_reason(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """Real node: the container raises; its traceback's last line is the reason."""
    script = "raise ValueError(\"column 'age' has NaN\")"
    apply(cluster, namespace, real_run("fails", script, backoffLimit=0))
    done = wait_phase(cluster, namespace, "fails", "Failed", timeout=180)
    failed = condition(done, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exit code 1" in failed["message"] and "column 'age' has NaN" in failed["message"]
    assert done["status"]["completionTime"]
    warnings = [e for e in events(cluster, namespace, "fails") if e["type"] == "Warning"]
    assert any(e["reason"] == "Failed" for e in warnings)


def test_permanent_error_is_not_retried(cluster: local.LocalCluster, namespace: str) -> None:
    """Real node: exit code 3 (the runtime's permanent failure) ends the run at once."""
    script = (
        "import sys\n"
        "open('/dev/termination-log', 'w').write('dataset iris:latest not found')\n"
        "sys.exit(3)\n"
    )
    apply(cluster, namespace, real_run("permanent", script, backoffLimit=4))
    done = wait_phase(cluster, namespace, "permanent", "Failed", timeout=180)
    assert condition(done, "Failed")["reason"] == "PodFailurePolicy"
    assert "dataset iris:latest not found" in done["status"]["message"]
    assert done["status"]["attempts"] == 1


def test_gpu_run_lands_only_on_a_gpu_node(cluster: local.LocalCluster, namespace: str) -> None:
    """kwok: scheduling onto the simulated GPU node."""
    apply(cluster, namespace, tj("gpu", resources={"cpu": "2", "memory": "4Gi", "gpu": 1}))
    apply(cluster, namespace, tj("cpu"))
    for name, prefix in (("gpu", "gpu-node-"), ("cpu", "cpu-node-")):
        obj = wait(cluster, lambda n=name: get(cluster, namespace, "trainingjob", n), name)
        uid = obj["metadata"]["uid"]
        pod = wait(
            cluster,
            lambda u=uid: [p for p in pods_of(cluster, namespace, u) if p["spec"].get("nodeName")],
            f"{name} scheduled",
        )[0]
        assert pod["spec"]["nodeName"].startswith(prefix), pod["spec"]["nodeName"]
    gpu_pod = pods_of(cluster, namespace, get(cluster, namespace, "tj", "gpu")["metadata"]["uid"])
    limits = gpu_pod[0]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    wait_phase(cluster, namespace, "gpu", "Succeeded")


def test_too_many_gpus_stay_pending_and_say_why(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """kwok: more GPUs than any node has."""
    apply(cluster, namespace, tj("greedy", resources={"cpu": "1", "gpu": 8}))

    def unschedulable() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "trainingjob", "greedy")
        conds = {c["type"]: c for c in (obj or {}).get("status", {}).get("conditions", [])}
        sched = conds.get("PodScheduled")
        return obj if sched and sched["status"] == "False" else None

    obj = wait(cluster, unschedulable, "PodScheduled=False")
    assert obj["status"]["phase"] == "Pending"
    message = condition(obj, "PodScheduled")["message"]
    assert "Insufficient nvidia.com/gpu" in message, message
    assert condition(obj, "PodScheduled")["reason"] == "Unschedulable"


def test_deleting_the_run_deletes_its_job_and_stops_its_container(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """Real node: a running container is stopped when its run is deleted."""
    apply(cluster, namespace, real_run("doomed", "import time; time.sleep(600)"))
    obj = wait(cluster, lambda: get(cluster, namespace, "trainingjob", "doomed"), "the run")
    uid = obj["metadata"]["uid"]
    wait(
        cluster,
        lambda: [p for p in pods_of(cluster, namespace, uid) if p["status"]["phase"] == "Running"],
        "the container to run",
        180,
    )
    cluster.kubectl("delete", "trainingjob", "doomed", "-n", namespace, "--wait=true")
    wait(cluster, lambda: not jobs_of(cluster, namespace, uid), "the garbage collector", 60)
    wait(cluster, lambda: not pods_of(cluster, namespace, uid), "the pod to go", 90)


def test_operator_crash_mid_run_creates_no_second_job(
    cluster: local.LocalCluster, namespace: str, operator: install.OperatorRelease
) -> None:
    """Real node: the operator's pod is force-deleted while a container trains."""
    apply(cluster, namespace, real_run("resilient", "import time; time.sleep(15)"))
    obj = wait(cluster, lambda: get(cluster, namespace, "trainingjob", "resilient"), "the run")
    uid = obj["metadata"]["uid"]
    first = wait(cluster, lambda: jobs_of(cluster, namespace, uid), "the Job")[0]
    operator.kill()  # stopped mid-run: scaled to zero, pod force-deleted
    apply(cluster, namespace, tj("while-down"))
    operator.start()
    done = wait_phase(cluster, namespace, "resilient", "Succeeded", timeout=180)
    after = jobs_of(cluster, namespace, uid)
    assert [j["metadata"]["uid"] for j in after] == [first["metadata"]["uid"]]
    assert done["status"]["attempts"] == 1
    wait_phase(cluster, namespace, "while-down", "Succeeded")
    created = [e for e in events(cluster, namespace, "resilient") if e["reason"] == "JobCreated"]
    assert len(created) == 1


def test_suspend_and_resume(cluster: local.LocalCluster, namespace: str) -> None:
    """kwok: the Job's suspension, no pod while suspended."""
    apply(cluster, namespace, tj("paused", suspend=True))
    obj = wait_phase(cluster, namespace, "paused", "Suspended")
    job = get(cluster, namespace, "job", "paused")
    assert job["spec"]["suspend"] is True
    assert pods_of(cluster, namespace, obj["metadata"]["uid"]) == []
    cluster.kubectl(
        "patch",
        "trainingjob",
        "paused",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":false}}',
    )
    wait_phase(cluster, namespace, "paused", "Succeeded")


def test_pod_template_change_after_start_is_reported(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """kwok: a spec edit after the Job exists."""
    slow = finishing_after(30)
    apply(cluster, namespace, tj("edited", podMetadata=slow))
    wait(cluster, lambda: get(cluster, namespace, "job", "edited"), "the Job")
    cluster.kubectl(
        "patch",
        "trainingjob",
        "edited",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"image":"other:2"}}',
    )

    def reported() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "trainingjob", "edited")
        conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        applied = conds.get("SpecApplied")
        return obj if applied and applied["status"] == "False" else None

    obj = wait(cluster, reported, "SpecApplied=False")
    assert condition(obj, "SpecApplied")["reason"] == "ImmutableAfterStart"
    assert obj["status"]["observedGeneration"] == 2


def test_operator_metrics(
    cluster: local.LocalCluster, namespace: str, operator: install.OperatorRelease
) -> None:
    """kwok run; the metrics come from the operator's pod."""
    apply(cluster, namespace, tj("measured"))
    wait_phase(cluster, namespace, "measured", "Succeeded")

    def scraped() -> str | None:
        text = operator.metrics()
        line = f'toque_trainingjobs{{namespace="{namespace}",phase="Succeeded"}} 1.0'
        return text if line in text else None

    text = wait(cluster, scraped, "the phase gauge")
    ok = re.search(r'toque_reconcile_total\{kind="TrainingJob",result="success"\} (\d+)', text)
    assert ok and int(ok.group(1)) > 0
    assert "toque_reconcile_duration_seconds_bucket" in text


def test_deadline_exceeded_fails_with_the_reason(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """Real node: the Job's deadline stops a container that would run for minutes."""
    apply(
        cluster,
        namespace,
        real_run("late", "import time; time.sleep(600)", activeDeadlineSeconds=20),
    )
    done = wait_phase(cluster, namespace, "late", "Failed", timeout=120)
    assert condition(done, "Failed")["reason"] == "DeadlineExceeded"


def test_pod_the_job_cannot_create_is_explained(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """kwok (never scheduled): admission refuses the pod."""
    apply(cluster, namespace, tj("no-priority", priorityClassName="does-not-exist"))

    def explained() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "trainingjob", "no-priority")
        conds = {c["type"]: c for c in (obj or {}).get("status", {}).get("conditions", [])}
        created = conds.get("PodCreated")
        return obj if created and created["status"] == "False" else None

    obj = wait(cluster, explained, "PodCreated=False", timeout=60)
    assert obj["status"]["phase"] == "Pending"
    assert condition(obj, "PodCreated")["reason"] == "FailedCreate"
    assert "does-not-exist" in condition(obj, "PodCreated")["message"]
