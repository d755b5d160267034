"""Pod status as a kubelet writes it, built from the local node agent's records.

Pure functions called by ``nodeagent`` each time it syncs a pod: container statuses, the
pod phase (the kubelet's ``getPhase`` rules), the pod conditions (``lastTransitionTime``
kept until a status flips) and the termination message from a file or a log tail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

TERMINATION_MESSAGE_LIMIT = 4096
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048
TERMINAL = ("Succeeded", "Failed")


@dataclasses.dataclass
class ContainerRecord:
    """What the agent knows about one container; times are RFC 3339 strings."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    last_state: dict[str, Any] | None = None

    @property
    def container_id(self) -> str | None:
        return f"toque-local://{self.pid}" if self.pid else None

    def terminated(self) -> dict[str, Any]:
        """The ``state.terminated`` of this container's last run."""
        out: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason}
        if self.message:
            out["message"] = self.message
        for key, value in (
            ("startedAt", self.started_at),
            ("finishedAt", self.finished_at),
            ("containerID", self.container_id),
        ):
            if value:
                out[key] = value
        return out


def exit_reason(exit_code: int) -> str:
    # OOMKilled needs a memory cgroup, which the agent does not create.
    return "Completed" if exit_code == 0 else "Error"


def container_status(record: ContainerRecord) -> dict[str, Any]:
    state: dict[str, Any]
    if record.state == "running":
        state = {"running": {"startedAt": record.started_at}}
    elif record.state == "terminated":
        state = {"terminated": record.terminated()}
    else:
        waiting = {"reason": record.reason}
        if record.message:
            waiting["message"] = record.message
        state = {"waiting": waiting}
    out: dict[str, Any] = {
        "name": record.name,
        "image": record.image,
        "imageID": "",
        "started": record.state == "running",
        "ready": record.ready,
        "restartCount": record.restart_count,
        "state": state,
        "lastState": {"terminated": record.last_state} if record.last_state else {},
    }
    if record.container_id:
        out["containerID"] = record.container_id
    return out


def _succeeded(record: ContainerRecord) -> bool:
    return record.state == "terminated" and record.exit_code == 0


def initialized(init: Sequence[ContainerRecord]) -> bool:
    return all(_succeeded(r) for r in init)


def pod_phase(
    init: Sequence[ContainerRecord],
    main: Sequence[ContainerRecord],
    restart_policy: str,
    terminating: bool = False,
) -> str:
    """The kubelet's ``getPhase``: ``terminating`` once every process has been stopped."""
    init_failed = any(r.state == "terminated" and r.exit_code != 0 for r in init)
    if init_failed and (restart_policy == "Never" or terminating):
        return "Failed"
    if not initialized(init):
        return "Failed" if terminating else "Pending"
    running = waiting = stopped = succeeded = 0
    for record in main:
        if record.state == "running":
            running += 1
        elif record.state == "terminated":
            stopped += 1
            succeeded += record.exit_code == 0
        elif record.last_state is not None:
            stopped += 1  # waiting to restart after a run
        else:
            waiting += 1
    if terminating:
        return "Succeeded" if stopped == succeeded == len(main) else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def _condition(
    previous: dict[str, dict[str, Any]],
    type_: str,
    ok: bool,
    now: str,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(type_, {})
    changed = before.get("status") != status
    out: dict[str, Any] = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
    }
    if reason and not ok:
        out["reason"] = reason
        if message:
            out["message"] = message
    return out


def conditions(
    previous: Sequence[dict[str, Any]],
    init: Sequence[ContainerRecord],
    main: Sequence[ContainerRecord],
    phase: str,
    readiness_gates: Sequence[str],
    now: str,
) -> list[dict[str, Any]]:
    """Conditions the kubelet owns; PodScheduled and others pass through a strategic merge."""
    before = {c["type"]: c for c in previous}
    pending_init = [r.name for r in init if not _succeeded(r)]
    unready = [r.name for r in main if not r.ready]
    gates = [g for g in readiness_gates if before.get(g, {}).get("status") != "True"]
    terminal = phase in TERMINAL
    containers_reason = "PodCompleted" if terminal else "ContainersNotReady"
    containers_message = (
        None if terminal else f"containers with unready status: [{' '.join(unready)}]"
    )
    ready_reason, ready_message = containers_reason, containers_message
    if not unready and gates and not terminal:
        ready_reason = "ReadinessGatesNotReady"
        ready_message = f"corresponding condition of pod readiness gate {gates[0]!r} is not True"
    init_message = f"containers with incomplete status: [{' '.join(pending_init)}]"
    return [
        _condition(before, "PodReadyToStartContainers", not terminal, now),
        _condition(
            before, "Initialized", not pending_init, now, "ContainersNotInitialized", init_message
        ),
        _condition(
            before,
            "ContainersReady",
            not unready and not terminal,
            now,
            containers_reason,
            containers_message,
        ),
        _condition(
            before,
            "Ready",
            not unready and not gates and not terminal,
            now,
            ready_reason,
            ready_message,
        ),
    ]


def log_tail(data: bytes, lines: int = LOG_TAIL_LINES, limit: int = LOG_TAIL_BYTES) -> str:
    """The kubelet's FallbackToLogsOnError text: the last ``lines`` lines, at most ``limit``."""
    kept = b"\n".join(data.rstrip(b"\n").split(b"\n")[-lines:])
    return kept[-limit:].decode("utf-8", "replace")


def termination_message(file_data: bytes, log: bytes, policy: str, exit_code: int) -> str:
    """The message for ``state.terminated``: the file's last 4096 bytes, or the log tail."""
    message = file_data[-TERMINATION_MESSAGE_LIMIT:].decode("utf-8", "replace")
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        return log_tail(log)
    return message


def pod_status(
    *,
    phase: str,
    conditions: list[dict[str, Any]],
    init: Sequence[ContainerRecord],
    main: Sequence[ContainerRecord],
    pod_ip: str,
    host_ip: str,
    start_time: str,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The ``status`` to patch; ``None`` clears a pod-level reason a strategic merge kept."""
    out: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": [container_status(r) for r in main],
        "reason": reason,
        "message": message,
    }
    if init:
        out["initContainerStatuses"] = [container_status(r) for r in init]
    return out


def was_run_before(pod: dict[str, Any]) -> bool:
    """Whether an earlier agent started this pod's processes (they died with it)."""
    status = pod.get("status") or {}
    if status.get("phase") in TERMINAL:
        return False
    items = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    started = any({"running", "terminated"} & set(i.get("state") or {}) for i in items)
    return status.get("phase") == "Running" or started


def _lost(statuses: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in statuses:
        if "terminated" not in (item.get("state") or {}):
            # The kubelet's words for a container it can no longer find.
            terminated = {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
            }
            item = {**item, "state": {"terminated": terminated}, "ready": False, "started": False}
        out.append(item)
    return out


def lost_pod_status(status: dict[str, Any], now: str) -> dict[str, Any]:
    """Failed, NodeAgentRestarted: for a pod whose processes died with an earlier agent."""
    conditions = [
        {**c, "status": "False", "lastTransitionTime": now, "reason": "PodFailed"}
        if c.get("type") in ("Ready", "ContainersReady") and c.get("status") == "True"
        else c
        for c in status.get("conditions") or []
    ]
    return {
        "phase": "Failed",
        "reason": "NodeAgentRestarted",
        "message": "the local node agent restarted; it does not adopt or re-run the pod's "
        "processes, which ended with the previous agent",
        "conditions": conditions,
        "initContainerStatuses": _lost(status.get("initContainerStatuses") or []),
        "containerStatuses": _lost(status.get("containerStatuses") or []),
    }
