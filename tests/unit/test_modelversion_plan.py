"""The rollout decisions for one model: first version, canary steps, analysis, rollback,
queueing and manual actions, without a cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from toque.api import constants
from toque.api import modelversion as mv
from toque.reconcile import analysis as an
from toque.reconcile import modelversion as decide
from toque.reconcile import registration

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
CONFIG = decide.Config(min_window_seconds=10)
MODEL = "iris"


def pod(name: str, ready: bool = True, traffic: str | None = None) -> dict[str, Any]:
    labels = {constants.LABEL_TRAFFIC: traffic} if traffic else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def version(
    name: str,
    *,
    status: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
    replicas: int = 2,
    pods: list[dict[str, Any]] | None = None,
    created: str = "2026-11-27T10:00:00Z",
    action: str | None = None,
    **extra: Any,
) -> decide.Version:
    spec: dict[str, Any] = {
        "model": MODEL,
        "source": {"runId": "a" * 32},
        "alias": "champion",
        "serving": {"replicas": replicas},
    }
    if rollout is not None:
        spec["rollout"] = rollout
    return decide.Version(
        name=name,
        uid=f"uid-{name}",
        generation=1,
        created=created,
        spec=spec,
        status=status or {},
        annotations={constants.ANNOTATION_ACTION: action} if action else {},
        pods=pods or [],
        deployment={"metadata": {"name": f"{name}-server"}} if pods else None,
        **extra,
    )


def registered(number: str, **fields: Any) -> dict[str, Any]:
    return {
        "registry": {"name": MODEL, "version": number},
        "modelUri": f"models:/{MODEL}/{number}",
        "modelDigest": "sha256:" + "0" * 64,
        **fields,
    }


def plan(*versions: decide.Version, now: dt.datetime = NOW, **kwargs: Any) -> decide.Plan:
    observed = decide.Observed(namespace="ns", model=MODEL, versions=versions, **kwargs)
    return decide.plan(observed, CONFIG, now)


def deployment_replicas(p: decide.Plan, name: str) -> int | None:
    for d in p.deployments:
        if d["metadata"]["name"] == f"{name}-server":
            return int(d["spec"]["replicas"])
    return None


STEPS: dict[str, Any] = {
    "steps": [{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
    "analysis": {"interval": "10s", "builtins": {"maxErrorRate": 0.05}},
}
STABLE = registered("1", phase="Promoted", promotedAt="2026-11-27T09:00:00+00:00")


def test_a_new_version_is_registered_from_what_the_handler_resolved() -> None:
    v = version(
        "v1",
        source=registration.Source("models:/iris/1", "r" * 32, "sha256:" + "1" * 64),
        registry_version="1",
    )
    p = plan(v)
    status = p.statuses["v1"]
    assert status["registry"] == {"name": "ns.iris", "version": "1"}
    assert status["modelDigest"] == "sha256:" + "1" * 64
    reasons = {e.reason for e in p.events}
    assert "Registered" in reasons and "RolloutStarted" in reasons


def test_a_source_that_failed_fails_the_version_and_a_registry_outage_waits() -> None:
    failed = plan(version("v1", error="TrainingJob t failed: boom")).statuses["v1"]
    assert failed["phase"] == "Failed" and "boom" in failed["message"]
    waiting = plan(version("v1", registry_error="MLflow unreachable")).statuses["v1"]
    assert waiting["phase"] == "Registering"
    registered_condition = next(c for c in waiting["conditions"] if c["type"] == "Registered")
    assert registered_condition["status"] == "Unknown"


def test_the_first_version_is_promoted_without_a_canary_once_its_pods_are_ready() -> None:
    fresh = plan(version("v1", status=registered("1")))
    assert fresh.statuses["v1"]["phase"] == "Progressing"
    assert deployment_replicas(fresh, "v1") == 2
    assert fresh.aliases == []
    half = plan(version("v1", status=registered("1"), pods=[pod("a"), pod("b", ready=False)]))
    assert half.statuses["v1"]["phase"] == "Progressing"
    assert ("a", True) in half.pod_traffic  # the first version takes traffic as pods get ready
    done = plan(version("v1", status=registered("1"), pods=[pod("a"), pod("b")]))
    assert done.statuses["v1"]["phase"] == "Promoted"
    assert done.aliases == [("champion", "1")]
    assert done.services and done.services[0]["spec"]["selector"][constants.LABEL_TRAFFIC] == "on"


def canary_status(step: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phase": "Progressing",
        "currentStep": step,
        "stepStartedAt": "2026-11-27T11:59:00+00:00",
        "stepsHash": decide.steps_hash([mv.RolloutStep.model_validate(s) for s in STEPS["steps"]]),
        "stableVersion": "v1",
    }
    return registered("2", **{**base, **fields})


def stable(pods: int = 2) -> decide.Version:
    return version(
        "v1",
        status=STABLE,
        pods=[pod(f"s{i}", traffic="on") for i in range(pods)],
        created="2026-11-27T09:00:00Z",
    )


def test_a_second_version_starts_a_canary_at_the_first_weight() -> None:
    p = plan(stable(), version("v2", status=registered("2"), rollout=STEPS))
    s = p.statuses["v2"]
    assert s["phase"] == "Progressing" and s["currentStep"] == 0 and s["canaryWeight"] == 10
    assert deployment_replicas(p, "v2") == 1
    assert deployment_replicas(p, "v1") == 2
    assert p.statuses["v1"]["phase"] == "Promoted"
    assert p.aliases == []


def test_stable_keeps_all_traffic_until_a_canary_pod_is_ready() -> None:
    waiting = plan(
        stable(),
        version("v2", status=canary_status(0), rollout=STEPS, pods=[pod("c0", ready=False)]),
    )
    assert ("c0", True) in waiting.pod_traffic
    assert not any(name.startswith("s") for name, _ in waiting.pod_traffic)
    assert waiting.analysis is None
    # One ready canary pod at 10 % beside two stable pods: as near as two pods allow.
    ready = plan(
        stable(),
        version("v2", status=canary_status(0), rollout=STEPS, pods=[pod("c0", traffic="on")]),
    )
    assert ready.pod_traffic == []
    assert ready.statuses["v2"]["actualCanaryWeight"] == 33
    # At 50 % one stable pod is withdrawn from traffic but kept running.
    half = plan(
        stable(),
        version("v2", status=canary_status(1), rollout=STEPS, pods=[pod("c0", traffic="on")]),
    )
    assert ("s1", False) in half.pod_traffic
    assert half.statuses["v2"]["actualCanaryWeight"] == 50
    assert deployment_replicas(half, "v1") == 2


def test_analysis_is_requested_when_due_and_a_pass_advances_the_step() -> None:
    canary = version("v2", status=canary_status(0), rollout=STEPS, pods=[pod("c0", traffic="on")])
    p = plan(stable(), canary)
    assert p.analysis is not None and p.analysis.version == "v2" and p.analysis.step == 0
    assert [c.name for c in p.analysis.checks] == [an.ERROR_RATE]
    passed = {an.ERROR_RATE: an.Outcome(an.ERROR_RATE, True, 0.0, "ok")}
    after = plan(stable(), canary, analysis=passed)
    s = after.statuses["v2"]
    assert s["currentStep"] == 1 and s["canaryWeight"] == 50
    assert s["analysisRuns"][-1]["passed"] is True
    assert deployment_replicas(after, "v2") == 1  # 50 % of 2 replicas


def test_a_failed_check_rolls_back_at_once_and_withdraws_the_canary() -> None:
    canary = version("v2", status=canary_status(1), rollout=STEPS, pods=[pod("c0", traffic="on")])
    failed = {an.ERROR_RATE: an.Outcome(an.ERROR_RATE, False, 0.3, "error rate 0.3")}
    p = plan(stable(), canary, analysis=failed)
    s = p.statuses["v2"]
    assert s["phase"] == "RolledBack" and "error-rate" in s["message"]
    assert ("c0", False) in p.pod_traffic
    assert deployment_replicas(p, "v2") == 0
    assert p.aliases == []
    assert p.statuses["v1"]["phase"] == "Promoted"
    assert any(e.type == "Warning" and e.reason == "RolledBack" for e in p.events)
    condition = next(c for c in s["conditions"] if c["type"] == "AnalysisPassed")
    assert condition["status"] == "False" and "0.3" in condition["message"]


def test_a_check_that_cannot_be_evaluated_stops_the_rollout_with_a_reason() -> None:
    rollout = {**STEPS, "analysis": {**STEPS["analysis"], "failureLimit": 5}}
    canary = version("v2", status=canary_status(0), rollout=rollout, pods=[pod("c0", traffic="on")])
    broken = an.Outcome(an.ERROR_RATE, False, None, "cannot evaluate: ValueError", invalid=True)
    p = plan(stable(), canary, analysis={an.ERROR_RATE: broken})
    s = p.statuses["v2"]
    assert s["phase"] == "RolledBack"  # a failureLimit of 5 does not keep retrying it
    condition = next(c for c in s["conditions"] if c["type"] == "AnalysisPassed")
    assert condition["reason"] == "InvalidCheck" and "cannot evaluate" in condition["message"]
    assert p.statuses["v1"]["phase"] == "Promoted"


def test_failure_limit_tolerates_failures_up_to_the_limit() -> None:
    rollout = {**STEPS, "analysis": {**STEPS["analysis"], "failureLimit": 1}}
    canary = version("v2", status=canary_status(0), rollout=rollout, pods=[pod("c0", traffic="on")])
    failed = {an.ERROR_RATE: an.Outcome(an.ERROR_RATE, False, 0.3, "bad")}
    first = plan(stable(), canary, analysis=failed).statuses["v2"]
    assert first["phase"] == "Progressing" and first["failureCounts"] == {an.ERROR_RATE: 1}
    again = dataclasses.replace(canary, status=first)
    second = plan(stable(), again, analysis=failed).statuses["v2"]
    assert second["phase"] == "RolledBack"


def test_no_data_is_inconclusive_and_never_advances() -> None:
    canary = version("v2", status=canary_status(0), rollout=STEPS, pods=[pod("c0", traffic="on")])
    none = {an.ERROR_RATE: an.Outcome(an.ERROR_RATE, None, None, "no data")}
    s = plan(stable(), canary, analysis=none).statuses["v2"]
    assert s["currentStep"] == 0 and s["phase"] == "Progressing"
    assert not s.get("failureCounts")
    outage = plan(stable(), canary, analysis={}, analysis_error="Prometheus unreachable")
    assert outage.statuses["v2"]["currentStep"] == 0


def test_the_last_step_promotes_moves_the_alias_and_keeps_the_old_stable_warm() -> None:
    canary = version(
        "v2",
        status=canary_status(3),
        rollout=STEPS,
        pods=[pod("c0", traffic="on"), pod("c1", traffic="on")],
    )
    p = plan(stable(), canary)
    assert p.statuses["v2"]["phase"] == "Promoted"
    assert p.statuses["v2"]["previous"] == "v1"
    assert p.statuses["v1"]["phase"] == "Superseded"
    assert p.aliases == [("champion", "2")]
    assert deployment_replicas(p, "v1") == 2  # warm, out of traffic
    assert {("s0", False), ("s1", False)} <= set(p.pod_traffic)


def test_a_second_rollout_of_the_same_model_waits_and_says_so() -> None:
    canary = version("v2", status=canary_status(0), rollout=STEPS)
    queued = version("v3", status=registered("3"), rollout=STEPS, created="2026-11-27T11:00:00Z")
    p = plan(stable(), canary, queued)
    s = p.statuses["v3"]
    assert s["phase"] == "Pending" and "v2" in s["message"]
    assert deployment_replicas(p, "v3") is None


def test_the_queue_moves_on_when_the_rollout_ends() -> None:
    canary = version("v2", status=canary_status(1), rollout=STEPS, pods=[pod("c0", traffic="on")])
    queued = version(
        "v3", status=registered("3", phase="Pending"), rollout=STEPS, created="2026-11-27T11:00:00Z"
    )
    failed = {an.ERROR_RATE: an.Outcome(an.ERROR_RATE, False, 0.5, "bad")}
    p = plan(stable(), canary, queued, analysis=failed)
    assert p.statuses["v2"]["phase"] == "RolledBack"
    assert p.statuses["v3"]["phase"] == "Progressing"


def test_timed_pause_waits_then_advances_and_an_open_pause_waits_for_resume() -> None:
    steps = {"steps": [{"setWeight": 50}, {"pause": {"duration": "2m"}}, {"pause": {}}]}
    c = [pod("c0", traffic="on")]
    paused = plan(
        stable(), version("v2", status=canary_status(1, stepsHash=None), rollout=steps, pods=c)
    )
    # steps hash differs from the stored one → starts again at step 0, then advances
    assert paused.statuses["v2"]["currentStep"] >= 1
    status = registered(
        "2",
        phase="Paused",
        currentStep=1,
        stepStartedAt="2026-11-27T11:59:00+00:00",
        stepsHash=decide.steps_hash([mv.RolloutStep.model_validate(s) for s in steps["steps"]]),
    )
    early = plan(stable(), version("v2", status=status, rollout=steps, pods=c))
    assert early.statuses["v2"]["phase"] == "Paused" and early.statuses["v2"]["currentStep"] == 1
    assert early.requeue_after is not None and 55 <= early.requeue_after <= 61
    later = NOW + dt.timedelta(minutes=2)
    observed = decide.Observed(
        namespace="ns",
        model=MODEL,
        versions=[stable(), version("v2", status=status, rollout=steps, pods=c)],
    )
    held = decide.plan(observed, CONFIG, later).statuses["v2"]
    assert held["currentStep"] == 2 and held["phase"] == "Paused"
    resumed = version("v2", status=held, rollout=steps, pods=c, action="resume:1")
    observed = dataclasses.replace(observed, versions=[stable(), resumed])
    done = decide.plan(observed, CONFIG, later)
    assert done.statuses["v2"]["lastAction"] == "resume:1"
    assert done.statuses["v2"]["currentStep"] == 3


@pytest.mark.parametrize(("verb", "phase"), [("abort", "Aborted"), ("rollback", "RolledBack")])
def test_abort_and_rollback_by_hand_withdraw_the_canary(verb: str, phase: str) -> None:
    canary = version(
        "v2",
        status=canary_status(1),
        rollout=STEPS,
        pods=[pod("c0", traffic="on")],
        action=f"{verb}:x",
    )
    p = plan(stable(), canary)
    assert p.statuses["v2"]["phase"] == phase
    assert ("c0", False) in p.pod_traffic
    assert p.statuses["v1"]["phase"] == "Promoted"
    # The same annotation value is handled once.
    handled = dataclasses.replace(canary, status=p.statuses["v2"])
    again = plan(stable(), handled)
    assert again.statuses["v2"]["phase"] == phase
    assert not any(e.reason == "ActionReceived" for e in again.events)


def test_promote_by_hand_skips_the_remaining_steps() -> None:
    canary = version(
        "v2",
        status=canary_status(0),
        rollout=STEPS,
        pods=[pod("c0", traffic="on"), pod("c1", traffic="on")],
        action="promote:1",
    )
    p = plan(stable(), canary)
    assert p.statuses["v2"]["phase"] == "Promoted"
    assert p.aliases == [("champion", "2")]


def test_rollback_of_a_promoted_version_returns_to_the_warm_previous_one() -> None:
    old = version(
        "v1",
        status=registered("1", phase="Superseded"),
        pods=[pod("s0", traffic="off")],
        created="2026-11-27T09:00:00Z",
    )
    new = version(
        "v2",
        status=registered(
            "2", phase="Promoted", previous="v1", promotedAt="2026-11-27T11:00:00+00:00"
        ),
        pods=[pod("c0", traffic="on")],
        action="rollback:1",
    )
    p = plan(old, new)
    assert p.statuses["v2"]["phase"] == "RolledBack"
    assert p.statuses["v1"]["phase"] == "Promoted"
    assert p.aliases == [("champion", "1")]
    assert {("s0", True), ("c0", False)} <= set(p.pod_traffic)


def test_rollback_without_a_previous_version_is_refused_with_a_warning() -> None:
    only = version("v1", status=STABLE, pods=[pod("s0", traffic="on")], action="rollback:1")
    p = plan(only)
    assert p.statuses["v1"]["phase"] == "Promoted"
    assert any(e.reason == "ActionIgnored" for e in p.events)


GATEWAY = {**STEPS, "traffic": {"mode": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}


def route_weights(p: decide.Plan) -> list[tuple[str, int]]:
    (route,) = p.routes
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_gateway_api_mode_splits_by_route_weights() -> None:
    canary = version("v2", status=canary_status(0), rollout=GATEWAY, pods=[pod("c0")])
    p = plan(stable(), canary)
    assert route_weights(p) == [("v1-server", 90), ("v2-server", 10)]
    assert p.statuses["v2"]["actualCanaryWeight"] == 10
    assert {s["metadata"]["name"] for s in p.services} >= {"iris", "v1-server", "v2-server"}


def test_gateway_api_mode_sends_no_route_weight_to_a_canary_without_ready_pods() -> None:
    canary = version("v2", status=canary_status(0), rollout=GATEWAY, pods=[pod("c0", False)])
    p = plan(stable(), canary)
    assert route_weights(p) == [("v1-server", 100), ("v2-server", 0)]
    assert p.statuses["v2"]["actualCanaryWeight"] == 0
    no_pods = plan(stable(), version("v2", status=canary_status(0), rollout=GATEWAY))
    assert route_weights(no_pods) == [("v1-server", 100), ("v2-server", 0)]


def test_gateway_api_mode_keeps_the_canary_out_of_the_model_service() -> None:
    canary = version("v2", status=canary_status(1), rollout=GATEWAY, pods=[pod("c0")])
    p = plan(stable(), canary)
    assert ("c0", True) not in p.pod_traffic
    assert route_weights(p) == [("v1-server", 50), ("v2-server", 50)]


@pytest.mark.parametrize(
    ("weight", "ready", "wanted", "expected"),
    [(10, 0, 1, 0), (10, 1, 1, 10), (50, 1, 2, 25), (50, 2, 2, 50), (0, 2, 0, 0), (1, 1, 3, 1)],
)
def test_route_weight_follows_ready_canary_pods(
    weight: int, ready: int, wanted: int, expected: int
) -> None:
    assert decide.route_weight(weight, ready, wanted) == expected


@pytest.mark.parametrize(
    ("stable_ready", "canary_ready", "weight", "expected"),
    [(4, 0, 50, 4), (4, 1, 10, 4), (4, 1, 50, 1), (4, 2, 50, 2), (4, 3, 100, 0), (1, 1, 10, 1)],
)
def test_stable_admission(stable_ready: int, canary_ready: int, weight: int, expected: int) -> None:
    assert decide.stable_admitted(stable_ready, canary_ready, weight) == expected


def test_canary_replicas_round_up_and_never_exceed_the_size() -> None:
    assert decide.canary_replicas(10, 10) == 1
    assert decide.canary_replicas(2, 10) == 1
    assert decide.canary_replicas(2, 0) == 0
    assert decide.canary_replicas(3, 100) == 3


def crashed(name: str, exit_code: int, restarts: int, message: str) -> dict[str, Any]:
    p = pod(name, ready=False)
    p["status"]["containerStatuses"] = [
        {
            "name": "server",
            "ready": False,
            "restartCount": restarts,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": exit_code, "message": message}},
        }
    ]
    return p


def test_a_server_that_refuses_its_model_fails_the_version_at_once() -> None:
    refused = crashed("c0", 3, 1, "digest mismatch for models:/iris/2")
    p = plan(stable(), version("v2", status=canary_status(0), rollout=STEPS, pods=[refused]))
    s = p.statuses["v2"]
    assert s["phase"] == "Failed" and "digest mismatch" in s["message"]
    assert deployment_replicas(p, "v2") == 0
    assert p.statuses["v1"]["phase"] == "Promoted"
    first = plan(version("v1", status=registered("1"), pods=[refused]))
    assert first.statuses["v1"]["phase"] == "Failed"


def test_a_crash_looping_server_fails_after_a_few_restarts() -> None:
    once = crashed("c0", 1, 1, "Traceback: boom")
    p = plan(stable(), version("v2", status=canary_status(0), rollout=STEPS, pods=[once]))
    assert p.statuses["v2"]["phase"] == "Progressing"
    looping = crashed("c0", 1, 3, "Traceback: boom")
    p = plan(stable(), version("v2", status=canary_status(0), rollout=STEPS, pods=[looping]))
    assert p.statuses["v2"]["phase"] == "Failed" and "boom" in p.statuses["v2"]["message"]


def promoted_v2_with_warm_v1(deleting: str) -> tuple[decide.Version, decide.Version]:
    v1 = version(
        "v1",
        status=registered("1", phase="Superseded", promotedAt="2026-11-27T09:00:00+00:00"),
        pods=[pod("s0", traffic="off"), pod("s1", traffic="off")],
        created="2026-11-27T09:00:00Z",
        deleting=deleting == "v1",
    )
    v2 = version(
        "v2",
        status=registered(
            "2", phase="Promoted", promotedAt="2026-11-27T11:00:00+00:00", previous="v1"
        ),
        pods=[pod("c0", traffic="on"), pod("c1", traffic="on")],
        deleting=deleting == "v2",
    )
    return v1, v2


def test_deleting_the_promoted_version_restores_the_warm_previous_one_and_its_alias() -> None:
    p = plan(*promoted_v2_with_warm_v1(deleting="v2"))
    assert p.statuses["v1"]["phase"] == "Promoted"
    assert p.statuses["v1"]["registry"]["alias"] == "champion"
    assert p.aliases == [("champion", "1")] and p.removed_aliases == []
    assert {("s0", True), ("s1", True), ("c0", False), ("c1", False)} <= set(p.pod_traffic)
    assert "v2" not in p.statuses  # no status write on an object being deleted
    assert deployment_replicas(p, "v2") is None  # left to the garbage collector
    assert deployment_replicas(p, "v1") == 2
    assert any(e.reason == "Restored" and e.version == "v1" for e in p.events)


def test_deleting_the_promoted_version_is_idempotent_across_cycles() -> None:
    v1, v2 = promoted_v2_with_warm_v1(deleting="v2")
    first = plan(v1, v2)
    again = plan(dataclasses.replace(v1, status=first.statuses["v1"]), v2)
    assert again.statuses["v1"]["phase"] == "Promoted"
    assert again.removed_aliases == []


def test_deleting_the_only_live_version_removes_its_alias() -> None:
    alone = version("v1", status=STABLE, pods=[pod("s0", traffic="on")], deleting=True)
    p = plan(alone)
    assert p.removed_aliases == ["champion"] and p.aliases == []
    assert ("s0", False) in p.pod_traffic


def test_deleting_a_superseded_version_leaves_the_live_one_alone() -> None:
    p = plan(*promoted_v2_with_warm_v1(deleting="v1"))
    assert p.statuses["v2"]["phase"] == "Promoted"
    assert p.aliases == [] and p.removed_aliases == []
    assert not [t for t in p.pod_traffic if t[0].startswith("c")]


def test_only_an_unregistered_live_version_needs_registration() -> None:
    assert decide.needs_registration(version("v1"))
    assert decide.needs_registration(version("v1", status={"phase": "Registering"}))
    assert not decide.needs_registration(version("v1", status=registered("1")))
    assert not decide.needs_registration(version("v1", status={"phase": "Failed"}))
    assert not decide.needs_registration(version("v1", deleting=True))


def test_an_unsettled_version_is_looked_at_again_a_settled_one_is_not() -> None:
    canary = version("v2", status=canary_status(0), rollout=STEPS, pods=[pod("c0", False)])
    p = plan(stable(), canary)
    again = decide.look_again(p, "v2")
    assert again is not None and again[0] == decide.POLL_SECONDS and "Progressing" in again[1]
    assert decide.look_again(p, "v1") is None  # Promoted
    gone = decide.look_again(decide.Plan(), "gone")
    assert gone == (decide.QUEUE_POLL_SECONDS, "new: looking again")
    paused = decide.Plan(statuses={"v": {"phase": "Paused"}}, requeue_after=600)
    assert decide.look_again(paused, "v") == (
        decide.MAX_LOOK_AGAIN_SECONDS,
        "Paused: looking again",
    )


def test_the_analysis_request_evaluates_prometheus_answers_into_outcomes() -> None:
    rollout = {
        **STEPS,
        "analysis": {
            "interval": "10s",
            "builtins": {"maxErrorRate": 0.05},
            "metrics": [
                {"name": "bad", "query": "x", "successCondition": "result < 1"},
                {"name": "quiet", "query": "y", "successCondition": "result < 1"},
            ],
        },
    }
    canary = version("v2", status=canary_status(0), rollout=rollout, pods=[pod("c0", traffic="on")])
    request = plan(stable(), canary).analysis
    assert request is not None and [c.name for c in request.checks] == [
        an.ERROR_RATE,
        "bad",
        "quiet",
    ]
    answers = {
        an.ERROR_RATE: an.Answer(
            samples={"errors": [an.Sample({}, 1)], "requests": [an.Sample({}, 100)]}
        ),
        "bad": an.Answer(error="parse error at char 3"),
    }
    outcomes = decide.outcomes(request, answers)
    assert outcomes[an.ERROR_RATE].passed is True
    assert outcomes["bad"].passed is False and outcomes["bad"].message.startswith("bad query")
    assert "quiet" not in outcomes  # not measured: the plan records it as inconclusive
    s = plan(stable(), canary, analysis=outcomes).statuses["v2"]
    assert s["phase"] == "RolledBack" and "bad: bad query" in s["message"]


def test_a_check_whose_evaluation_raises_becomes_an_invalid_outcome() -> None:
    analysis = mv.Analysis.model_construct(
        interval="10s",
        failure_limit=0,
        builtins=mv.BuiltinChecks(max_error_rate=None),
        metrics=[
            mv.PrometheusMetric.model_construct(
                name="m", query="q", success_condition="result < 1.2.3", failure_limit=None
            )
        ],
    )
    request = decide.AnalysisRequest("v2", 0, [an.Check("m", {"value": "q"}, 0)], analysis)
    answers = {"m": an.Answer(samples={"value": [an.Sample({}, 0.5)]})}
    (out,) = decide.outcomes(request, answers).values()
    assert out.invalid and out.passed is False


def test_unknown_and_invalid_status_fields_are_tolerated_and_left_alone() -> None:
    status = registered("1", phase="Promoted", fromAnOldOperator={"x": 1}, currentStep="two")
    status["conditions"] = [{"type": "Available"}, {"bogus": True}]
    s = plan(version("v1", status=status, pods=[pod("a", traffic="on"), pod("b", traffic="on")]))
    out = s.statuses["v1"]
    assert out["phase"] == "Promoted" and out["registry"]["version"] == "1"
    assert "fromAnOldOperator" not in out and "currentStep" not in out  # the patch skips them
    assert [c["type"] for c in out["conditions"]] == ["Available"]


def test_status_patches_clear_fields_with_null_and_write_rfc3339_times() -> None:
    canary = version(
        "v2",
        status=canary_status(3),
        rollout=STEPS,
        pods=[pod("c0", traffic="on"), pod("c1", traffic="on")],
    )
    old_stable = version(
        "v1",
        status={**STABLE, "registry": {"name": MODEL, "version": "1", "alias": "champion"}},
        pods=[pod("s0", traffic="on")],
        created="2026-11-27T09:00:00Z",
    )
    p = plan(old_stable, canary)
    new, old = p.statuses["v2"], p.statuses["v1"]
    assert new["phase"] == "Promoted" and new["stableVersion"] is None
    assert new["registry"]["alias"] == "champion"
    assert new["promotedAt"] == "2026-11-27T12:00:00Z"
    assert old["phase"] == "Superseded"
    assert "alias" in old["registry"] and old["registry"]["alias"] is None  # merge patch: remove
    assert dt.datetime.fromisoformat(new["conditions"][0]["lastTransitionTime"]) == NOW


def server_args(p: decide.Plan, name: str) -> list[str]:
    (d,) = [d for d in p.deployments if d["metadata"]["name"] == f"{name}-server"]
    return list(d["spec"]["template"]["spec"]["containers"][0]["args"])


def test_the_server_checks_the_digest_or_runs_unverified_only_when_allowed() -> None:
    verified = server_args(plan(version("v1", status=registered("1"))), "v1")
    assert "--expected-digest" in verified and "--allow-unverified" not in verified
    bare = registered("1", modelDigest=None)
    lax = version("v1", status=bare)
    lax = dataclasses.replace(
        lax, spec={**lax.spec, "source": {"runId": "a" * 32, "allowUnverified": True}}
    )
    assert "--allow-unverified" in server_args(plan(lax), "v1")
    strict = server_args(plan(version("v1", status=bare)), "v1")
    assert "--allow-unverified" not in strict and "--expected-digest" not in strict
