"""The node agent reports pod status as a kubelet would: phase, conditions, container states,
termination messages, and what a restarted agent says about pods it lost."""

from __future__ import annotations

from typing import Any

import pytest

from toque.local import nodeagent_process as proc
from toque.local import nodeagent_status as st

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def running(name: str = "main", pid: int = 42) -> st.ContainerRecord:
    return st.ContainerRecord(name, "img", state="running", reason="", pid=pid, started_at=T0)


def exited(name: str = "main", code: int = 0) -> st.ContainerRecord:
    return st.ContainerRecord(
        name,
        "img",
        state="terminated",
        reason=st.exit_reason(code),
        pid=42,
        started_at=T0,
        finished_at=T1,
        exit_code=code,
    )


def waiting(name: str = "main") -> st.ContainerRecord:
    return st.ContainerRecord(name, "img")


def restarting(name: str = "main") -> st.ContainerRecord:
    record = waiting(name)
    record.reason = "CrashLoopBackOff"
    record.last_state = exited(name, 1).terminated()
    return record


@pytest.mark.parametrize(
    ("init", "main", "policy", "want"),
    [
        ([], [waiting()], "Never", "Pending"),
        ([], [running()], "Never", "Running"),
        ([], [exited(code=0)], "Never", "Succeeded"),
        ([], [exited(code=2)], "Never", "Failed"),
        # a failed container under Never waits for its siblings before the pod fails
        ([], [exited(code=2), running("b")], "Never", "Running"),
        ([], [exited(code=0), exited("b", 1)], "Never", "Failed"),
        ([], [restarting()], "OnFailure", "Running"),
        ([], [exited(code=0)], "OnFailure", "Succeeded"),
        ([], [restarting()], "Always", "Running"),
        ([], [running(), waiting("b")], "Always", "Pending"),
        ([running("init")], [waiting()], "Never", "Pending"),
        ([exited("init", 1)], [waiting()], "Never", "Failed"),
        ([exited("init", 1)], [waiting()], "OnFailure", "Pending"),
        ([exited("init", 0)], [running()], "Never", "Running"),
    ],
)
def test_pod_phase_follows_the_kubelet(
    init: list[st.ContainerRecord], main: list[st.ContainerRecord], policy: str, want: str
) -> None:
    assert st.pod_phase(init, main, policy) == want


def test_a_deleted_pod_ends_succeeded_only_if_every_container_exited_zero() -> None:
    assert st.pod_phase([], [exited(code=0)], "Always", terminating=True) == "Succeeded"
    assert st.pod_phase([], [exited(code=143)], "Always", terminating=True) == "Failed"
    assert st.pod_phase([waiting("init")], [waiting()], "Never", terminating=True) == "Failed"


def test_container_status_shapes() -> None:
    status = st.container_status(running())
    assert status == {
        "name": "main",
        "image": "img",
        "imageID": "",
        "containerID": "toque-local://42",
        "started": True,
        "ready": False,
        "restartCount": 0,
        "state": {"running": {"startedAt": T0}},
        "lastState": {},
    }
    done = exited(code=3)
    done.message = "boom"
    assert st.container_status(done)["state"] == {
        "terminated": {
            "exitCode": 3,
            "reason": "Error",
            "message": "boom",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "toque-local://42",
        }
    }
    backoff = st.container_status(restarting())
    assert backoff["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert backoff["lastState"]["terminated"]["exitCode"] == 1
    assert "containerID" not in st.container_status(waiting())


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def test_ready_follows_the_containers_and_keeps_transition_times() -> None:
    unready = running()
    first = by_type(st.conditions([], [], [unready], "Running", [], T0))
    assert first["Ready"]["status"] == "False"
    assert first["Ready"]["reason"] == "ContainersNotReady"
    assert first["Ready"]["message"] == "containers with unready status: [main]"
    assert first["Initialized"]["status"] == "True"
    ready = running()
    ready.ready = True
    second = by_type(st.conditions(list(first.values()), [], [ready], "Running", [], T1))
    assert second["Ready"]["status"] == "True"
    assert second["Ready"]["lastTransitionTime"] == T1
    # unchanged status keeps its time
    assert second["Initialized"]["lastTransitionTime"] == T0
    done = by_type(st.conditions(list(second.values()), [], [exited()], "Succeeded", [], T1))
    assert done["Ready"]["reason"] == "PodCompleted"
    assert done["PodReadyToStartContainers"]["status"] == "False"


def test_readiness_gates_and_init_containers_hold_ready_back() -> None:
    ready = running()
    ready.ready = True
    gated = by_type(st.conditions([], [], [ready], "Running", ["example.com/lb"], T0))
    assert gated["ContainersReady"]["status"] == "True"
    assert gated["Ready"]["reason"] == "ReadinessGatesNotReady"
    passed = [{"type": "example.com/lb", "status": "True"}]
    assert (
        by_type(st.conditions(passed, [], [ready], "Running", ["example.com/lb"], T0))["Ready"][
            "status"
        ]
        == "True"
    )
    initializing = by_type(st.conditions([], [running("setup")], [waiting()], "Pending", [], T0))
    assert initializing["Initialized"]["status"] == "False"
    assert initializing["Initialized"]["message"] == "containers with incomplete status: [setup]"


def test_termination_message_from_the_file_or_the_log_tail() -> None:
    log = "".join(f"line {i}\n" for i in range(100)).encode()
    assert st.termination_message(b"result=ok", log, "FallbackToLogsOnError", 1) == "result=ok"
    tail = st.termination_message(b"", log, "FallbackToLogsOnError", 1).splitlines()
    assert tail[0] == "line 20" and tail[-1] == "line 99" and len(tail) == 80
    # success, or the plain File policy, never falls back to logs
    assert st.termination_message(b"", log, "FallbackToLogsOnError", 0) == ""
    assert st.termination_message(b"", log, "File", 1) == ""
    big = b"x" * 5000 + b"END"
    assert st.termination_message(big, b"", "File", 0).endswith("END")
    assert len(st.termination_message(big, b"", "File", 0)) == 4096


def test_log_tail_is_capped_in_bytes() -> None:
    tail = st.log_tail(("y" * 100 + "\n").encode() * 80)
    assert len(tail.encode()) == 2048


def test_pod_status_carries_addresses_and_clears_reasons() -> None:
    status = st.pod_status(
        phase="Running",
        conditions=[],
        init=[],
        main=[running()],
        pod_ip="127.1.0.3",
        host_ip="127.0.0.1",
        start_time=T0,
    )
    assert status["podIP"] == "127.1.0.3"
    assert status["podIPs"] == [{"ip": "127.1.0.3"}]
    assert status["hostIP"] == "127.0.0.1"
    assert status["reason"] is None  # a strategic merge patch deletes it
    assert "initContainerStatuses" not in status


def test_a_restarted_agent_recognises_pods_it_was_running() -> None:
    started = {"state": {"running": {"startedAt": T0}}, "name": "main", "ready": True}
    assert st.was_run_before({"status": {"phase": "Running"}})
    assert st.was_run_before({"status": {"phase": "Pending", "containerStatuses": [started]}})
    assert not st.was_run_before({"status": {"phase": "Pending"}})
    assert not st.was_run_before({"status": {"phase": "Succeeded"}})
    lost = st.lost_pod_status(
        {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": T0}],
            "containerStatuses": [started],
        },
        T1,
    )
    assert lost["phase"] == "Failed"
    assert lost["reason"] == "NodeAgentRestarted"
    assert lost["conditions"][0]["status"] == "False"
    terminated = lost["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "ContainerStatusUnknown"
    assert terminated["exitCode"] == 137


def test_loopback_pod_addresses_are_sequential_and_never_reused() -> None:
    ips = proc.IPAllocator(routable=False)
    got = [ips.allocate() for _ in range(256)]
    assert got[:3] == ["127.1.0.1", "127.1.0.2", "127.1.0.3"]
    assert got[253:255] == ["127.1.0.254", "127.1.1.1"]  # never .0 or .255
    assert len(set(got)) == len(got)


def test_signals_become_exit_codes_like_a_container_runtime() -> None:
    assert proc.exit_code(0) == 0
    assert proc.exit_code(3) == 3
    assert proc.exit_code(-9) == 137
    assert proc.exit_code(-15) == 143
