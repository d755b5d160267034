"""Two operator replicas, one leading: the chart's default install, on the real node.

The leader's process is SIGKILLed (no shutdown, its Lease not released, as a crash or the OOM
killer leaves it) in the middle of a training run and in the middle of a canary; the standby
takes over once the Lease has run out. Measured: the takeover time (kill → the standby holds
the Lease and says it leads) and, for a clean shutdown (the pod deleted), the handover time.
Nothing is done twice: one Job, one registry version per ModelVersion, the canary at its step
with its step's clock untouched.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.request
from typing import Any

import pytest

from tests.e2e.helpers import apply, events, get, wait
from tests.e2e.test_rollout import Logged, logged, status  # noqa: F401 - `logged` is a fixture
from tests.e2e.test_rollout import modelversion as rollout_modelversion
from tests.e2e.test_rollout import wait_phase as wait_mv_phase
from tests.e2e.test_trainingjob import jobs_of, real_run
from tests.e2e.test_trainingjob import wait_phase as wait_tj_phase
from toque.clients import mlflow_registry
from toque.local import cluster as local
from toque.local import install, services

LEASE_DURATION = 15.0  # the chart's default operator.leaderElection.leaseDuration
RETRY_PERIOD = 2.0
# The standby looks every 2-4.4 s (retry period with client-go's jitter) and the kill can
# come just after a renewal: the takeover is due at most this long after the kill, give or
# take the API server's answers on a loaded node.
TAKEOVER_BOUND = LEASE_DURATION + RETRY_PERIOD * 2.2 + 5.0
TAKEOVERS: list[tuple[str, float]] = []


def roles(operator: install.OperatorRelease) -> dict[str, str]:
    return {
        p["metadata"]["name"]: (p["metadata"].get("labels") or {}).get("toque.dev/role", "")
        for p in operator.running_pods()
    }


def readyz(pod: dict[str, Any]) -> tuple[int, str]:
    url = f"http://{pod['status']['podIP']}:8081/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def leader_gauge(pod: dict[str, Any]) -> float | None:
    url = f"http://{pod['status']['podIP']}:8080/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('toque_operator_leader{election="lease"}'):
                return float(line.split()[-1])
    return None


def settled(operator: install.OperatorRelease) -> bool:
    """Both replicas Running and Ready, one active and holding the Lease, one standby."""
    pods = operator.running_pods()
    ready = all(s.get("ready") for p in pods for s in p["status"].get("containerStatuses") or [])
    holder = operator.lease_holder()
    return (
        len(pods) == 2
        and ready
        and sorted(roles(operator).values()) == ["active", "standby"]
        and roles(operator).get(holder) == "active"
    )


def crash_and_time_the_takeover(
    cluster: local.LocalCluster, operator: install.OperatorRelease, what: str
) -> tuple[str, str, float]:
    """SIGKILL the leader; returns (old leader, new leader, seconds until a new process holds
    the Lease and its pod is labelled active). Once the Lease has run out every live process
    is a candidate: the standby, or the killed pod's restarted process when it looks first."""
    wait(cluster, lambda: settled(operator), "two settled replicas", 120)
    crashed = operator.lease()["spec"]["holderIdentity"]
    killed_at = time.monotonic()
    old = operator.crash_leader()
    seen: dict[str, Any] = {}

    def taken_over() -> str | None:
        holder = str((operator.lease().get("spec") or {}).get("holderIdentity") or "")
        pod = holder.rpartition("_")[0]
        seen.update(holder=holder, roles=roles(operator))
        return pod if holder and holder != crashed and seen["roles"].get(pod) == "active" else None

    try:
        new = wait(cluster, taken_over, "a new process to take the Lease", 60)
    except local.ClusterError as error:
        raise AssertionError(f"no takeover from {crashed}; last seen {seen}") from error
    took = time.monotonic() - killed_at
    TAKEOVERS.append((what, took))
    print(f"\ntakeover after SIGKILL of the leader ({what}): {took:.1f} s")
    assert took <= TAKEOVER_BOUND, (what, took)
    # The crashed container restarts and stands by: two replicas again, roles swapped.
    wait(cluster, lambda: settled(operator), "the crashed replica back as a standby", 120)
    assert operator.lease_holder() == new
    return old, str(new), took


@pytest.mark.usefixtures("namespace")
def test_two_replicas_run_one_active_and_one_standby_both_ready(
    cluster: local.LocalCluster, operator: install.OperatorRelease
) -> None:
    wait(cluster, lambda: settled(operator), "two settled replicas", 120)
    leader = operator.pod()
    standby = next(
        p for p in operator.running_pods() if p["metadata"]["name"] != leader["metadata"]["name"]
    )
    assert readyz(leader) == (200, "active")
    assert readyz(standby) == (200, "standby")
    assert leader_gauge(leader) == 1.0 and leader_gauge(standby) == 0.0
    # Only the leader runs kopf: the standby reconciled nothing.
    standby_log = cluster.kubectl(
        "logs", standby["metadata"]["name"], "-n", operator.namespace
    ).stdout
    assert "stands by for Lease" in standby_log and "starting the operator" not in standby_log
    pdb = cluster.kubectl_json("get", "pdb", "-n", operator.namespace)["items"]
    assert [p["spec"]["minAvailable"] for p in pdb] == [1]
    wait(
        cluster,
        lambda: (
            cluster.kubectl_json("get", "pdb", "-n", operator.namespace)["items"][0]["status"].get(
                "disruptionsAllowed"
            )
            == 1
        ),
        "the PDB to allow one eviction",
        30,
    )


def test_leader_crash_mid_training_the_standby_finishes_the_run_with_one_job(
    cluster: local.LocalCluster, namespace: str, operator: install.OperatorRelease
) -> None:
    apply(cluster, namespace, real_run("through-failover", "import time; time.sleep(40)"))
    obj = wait(
        cluster, lambda: get(cluster, namespace, "trainingjob", "through-failover"), "the run"
    )
    uid = obj["metadata"]["uid"]
    first = wait(cluster, lambda: jobs_of(cluster, namespace, uid), "the Job", 60)[0]
    wait_tj_phase(cluster, namespace, "through-failover", "Running", timeout=120)

    crash_and_time_the_takeover(cluster, operator, "mid-training")
    # A run created while the old leader is dead and the new one leads is picked up too.
    apply(cluster, namespace, real_run("after-failover", "print('ok')"))

    done = wait_tj_phase(cluster, namespace, "through-failover", "Succeeded", timeout=180)
    assert [j["metadata"]["uid"] for j in jobs_of(cluster, namespace, uid)] == [
        first["metadata"]["uid"]
    ]
    assert done["status"]["attempts"] == 1
    created = [
        e for e in events(cluster, namespace, "through-failover") if e["reason"] == "JobCreated"
    ]
    assert len(created) == 1, created
    wait_tj_phase(cluster, namespace, "after-failover", "Succeeded", timeout=180)


def test_leader_crash_mid_canary_resumes_at_its_step_with_one_registry_version(
    cluster: local.LocalCluster,
    namespace: str,
    operator: install.OperatorRelease,
    mlflow_server: services.Mlflow,
    logged: Logged,  # noqa: F811 - the fixture imported above
) -> None:
    ns = namespace
    model = f"failover-{ns}"
    registered = f"{ns}.{model}"

    def version(name: str, run: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        doc = rollout_modelversion(name, model, logged.runs[run])
        doc["spec"]["serving"]["replicas"] = 1
        doc["spec"]["rollout"] = {"steps": steps}
        return doc

    apply(cluster, ns, version(f"{model}-v1", "v1", [{"setWeight": 100}]))
    wait_mv_phase(cluster, ns, f"{model}-v1", "Promoted")
    pause = 45
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"pause": {"duration": f"{pause}s"}},
        {"setWeight": 100},
    ]
    apply(cluster, ns, version(f"{model}-v2", "v2", steps))

    def at_pause() -> dict[str, Any] | None:
        s = status(cluster, ns, f"{model}-v2")
        return s if s.get("currentStep") == 1 and s.get("stepStartedAt") else None

    before = wait(cluster, at_pause, "v2 to reach its pause step", 240)
    crash_and_time_the_takeover(cluster, operator, "mid-canary")

    seen: list[dict[str, Any]] = []

    def promoted() -> dict[str, Any] | None:
        s = status(cluster, ns, f"{model}-v2")
        seen.append(s)
        if s.get("phase") in ("RolledBack", "Failed", "Aborted"):
            raise AssertionError(f"v2 ended {s['phase']}: {s.get('message')}")
        return s if s.get("phase") == "Promoted" else None

    v2 = wait(cluster, promoted, "v2 promoted by the new leader", 240)
    # Resumed at the pause, never back at step 0, and the pause's clock was not restarted.
    assert all((s.get("currentStep") or 0) >= 1 for s in seen if s.get("phase") != "Promoted")
    at_step_1 = {s.get("stepStartedAt") for s in seen if s.get("currentStep") == 1}
    assert at_step_1 <= {before["stepStartedAt"]}, (before["stepStartedAt"], at_step_1)
    assert all(s.get("canaryWeight") in (None, 50, 100) for s in seen)
    # The pause's clock ran from its start as the old leader wrote it: promotion comes a
    # full pause later, plus at most the takeover and the last step.
    waited = (
        dt.datetime.fromisoformat(v2["promotedAt"])
        - dt.datetime.fromisoformat(before["stepStartedAt"])
    ).total_seconds()
    assert pause <= waited <= pause + TAKEOVER_BOUND + 30, waited

    registry = mlflow_registry.Registry(mlflow_server.uri)
    versions = registry.versions(registered)
    assert sorted(int(v["version"]) for v in versions) == [1, 2], versions
    assert registry.alias_version(registered, "champion") == v2["registry"]["version"]
    deployments = cluster.kubectl_json(
        "get", "deployments", "-n", ns, "-l", f"toque.dev/modelversion={model}-v2"
    )["items"]
    assert len(deployments) == 1


def test_leader_shutdown_hands_over_at_once(
    cluster: local.LocalCluster, operator: install.OperatorRelease
) -> None:
    """A clean stop (a rolling update, a drain): the leader releases the Lease on SIGTERM,
    so the standby leads at its next look instead of waiting the Lease out."""
    wait(cluster, lambda: settled(operator), "two settled replicas", 120)
    old = operator.pod()["metadata"]["name"]
    started = time.monotonic()
    cluster.kubectl("delete", "pod", old, "-n", operator.namespace, "--wait=false")

    def handed_over() -> str | None:
        holder = operator.lease_holder()
        return (
            holder if holder and holder != old and roles(operator).get(holder) == "active" else None
        )

    wait(cluster, handed_over, "the standby to lead", 60)
    took = time.monotonic() - started
    print(f"\nhandover after the leader's pod was deleted: {took:.1f} s")
    assert took < LEASE_DURATION, took
    wait(cluster, lambda: settled(operator), "a new standby", 180)
    TAKEOVERS.append(("clean shutdown", took))
    assert operator.lease()["spec"]["leaseTransitions"] >= 1
