"""One pod on the local node agent's node: its processes, probes, status and deletion.

``nodeagent.Agent`` creates a ``PodWorker`` for each pod bound to its node and hands it every
new version of the pod object it lists; the worker runs in its own thread, so a slow probe
or a pod's grace period never delays the node's heartbeat or another pod. What the agent
does not do is listed in ``nodeagent``'s docstring.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

from toque.clients import kube as kube_client
from toque.local import nodeagent_env as envs
from toque.local import nodeagent_process as proc
from toque.local import nodeagent_status as st

LOG = logging.getLogger("toque.nodeagent")
POLL_SECONDS = 0.5
MAX_GRACE_SECONDS = 10
GONE_GRACE_SECONDS = 2
SHUTDOWN_GRACE_SECONDS = 5
CONFIG_RETRY_SECONDS = 2.0
# The kubelet backs off 10 s doubling to 5 min; tests cannot wait that long.
BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 10.0
DELETE_RETRY_SECONDS = 10.0
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


@dataclasses.dataclass
class Context:
    """What every worker shares with the agent."""

    kube: kube_client.Kube
    node: str
    host_ip: str
    workdir: pathlib.Path
    ips: proc.IPAllocator
    stopping: threading.Event
    path_prefix: str
    python_path: str = ""


@dataclasses.dataclass
class _Slot:
    """One container: its spec, its status record and its current process."""

    spec: dict[str, Any]
    record: st.ContainerRecord
    init: bool
    popen: subprocess.Popen[bytes] | None = None
    next_start: float | None = 0.0
    backoff: float = BACKOFF_START_SECONDS
    runs: int = 0
    log_offset: int = 0
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    probe_due: float = 0.0
    probe_ok: int = 0
    probe_fail: int = 0


class PodWorker:
    """Runs one pod; ``update`` with each listed version, ``gone`` when it is no longer listed."""

    def __init__(self, ctx: Context, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.uid: str = pod["metadata"]["uid"]
        self.key = pod_key(pod)
        self._pod = pod
        self._gone = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.mode = "new"  # new -> run -> done; lost for pods an earlier agent ran
        self.slots: list[_Slot] = []
        self.pod_ip = ""
        self.start_time = ""
        self._start_mono = 0.0
        self.dir = ctx.workdir / "pods" / f"{self.key.replace('/', '_')}_{self.uid[:8]}"
        self.phase_override: str | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.terminating = False
        self._sent: dict[str, Any] | None = None
        self._delete_sent: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        with self._lock:
            self._gone = True
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        gone = False
        try:
            while not self.ctx.stopping.is_set():
                with self._lock:
                    pod, gone = self._pod, self._gone
                if gone:
                    break
                try:
                    self._sync(pod)
                except Exception as error:
                    # The API server may be restarting: keep the processes and try again.
                    LOG.warning("pod %s: sync failed, retrying: %s", self.key, error)
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
        finally:
            # A pod deleted at once (force) or an agent shutting down: short grace periods,
            # so the whole agent stops within its parent's 10 s.
            self._stop_all(GONE_GRACE_SECONDS if gone else SHUTDOWN_GRACE_SECONDS, restart=False)
            if gone:
                for part in ("wd", "volumes", "home", "tmp"):
                    shutil.rmtree(self.dir / part, ignore_errors=True)
            LOG.info("pod %s: worker done", self.key)

    def _sync(self, pod: dict[str, Any]) -> None:
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if self.mode == "new":
            if deleting or (pod.get("status") or {}).get("phase") in st.TERMINAL:
                self.mode = "done"
            elif st.was_run_before(pod):
                self.mode = "lost"
            else:
                self._begin(pod)
        if self.mode == "lost":
            self._mark_lost(pod)
        if deleting:
            self._delete(pod)
            return
        if self.mode != "run":
            return
        self._check_deadline(pod)
        self._advance(pod)
        self._probe()
        phase = self._write_status(pod)
        if phase in st.TERMINAL:
            self.mode = "done"

    # -- start ----------------------------------------------------------------------------

    def _begin(self, pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        self.pod_ip = self.ctx.ips.allocate()
        self.start_time = stamp()
        self._start_mono = time.monotonic()
        for part in ("wd", "volumes", "home", "tmp", "logs", "termination"):
            (self.dir / part).mkdir(parents=True, exist_ok=True)
        for volume in spec.get("volumes") or []:
            if "emptyDir" in volume:
                (self.dir / "volumes" / volume["name"]).mkdir(exist_ok=True)
        for init, field in ((True, "initContainers"), (False, "containers")):
            for container in spec.get(field) or []:
                record = st.ContainerRecord(container["name"], container.get("image", ""))
                if spec.get("initContainers"):
                    record.reason = "PodInitializing"
                self.slots.append(_Slot(container, record, init))
        self.mode = "run"
        LOG.info("pod %s: starting on %s", self.key, self.pod_ip)
        problems = [(s, "NoCommand") for s in self.slots if not s.spec.get("command")]
        problems += [
            (s, "Unsupported") for s in self.slots if s.init and s.spec.get("restartPolicy")
        ]
        if problems:
            slot, reason = problems[0]
            name = slot.record.name
            message = (
                f"container {name} has no command: the local node agent ignores images, so "
                "it needs spec.containers[].command"
                if reason == "NoCommand"
                else f"init container {name} is a sidecar (restartPolicy), which the local "
                "node agent does not support"
            )
            self._fail_pod(reason, message, slot)

    def _fail_pod(self, reason: str, message: str, culprit: _Slot) -> None:
        for slot in self.slots:
            slot.next_start = None
            if slot is culprit:
                slot.record.state, slot.record.exit_code = "terminated", 128
                slot.record.reason, slot.record.message = reason, message
                slot.record.finished_at = stamp()
            elif slot.record.state == "waiting":
                slot.record.reason, slot.record.message = "Blocked", f"not started: {message}"
        self.phase_override, self.reason, self.message = "Failed", reason, message

    def _lookup(self, namespace: str) -> envs.Lookup:
        def lookup(kind: str, name: str) -> dict[str, str] | None:
            plural = "secrets" if kind == "Secret" else "configmaps"
            try:
                obj = self.ctx.kube.request(
                    "GET", f"/api/v1/namespaces/{namespace}/{plural}/{name}"
                )
            except kube_client.ApiException as error:
                if error.status == 404:
                    return None
                raise envs.ConfigError(f"reading {kind} {name}: {error.reason}") from error
            except Exception as error:
                raise envs.ConfigError(f"reading {kind} {name}: {error}") from error
            # Secrets hold base64 in ``data``; ConfigMaps hold text in ``data``, base64 in
            # ``binaryData``.
            encoded = obj.get("data" if kind == "Secret" else "binaryData") or {}
            data: dict[str, str] = {} if kind == "Secret" else dict(obj.get("data") or {})
            for key, value in encoded.items():
                data[key] = base64.b64decode(value).decode("utf-8", "replace")
            return data

        return lookup

    def _environment(self, slot: _Slot, pod: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """The process's environment and command line; ``ConfigError`` when not ready yet."""
        spec = pod["spec"]
        base = {
            "PATH": f"{self.ctx.path_prefix}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.dir / "home"),
            "TMPDIR": str(self.dir / "tmp"),
            "HOSTNAME": spec.get("hostname") or pod["metadata"]["name"],
            "TOQUE_TERMINATION_MESSAGE_PATH": str(self.dir / "termination" / slot.record.name),
        }
        if self.ctx.python_path:
            base["PYTHONPATH"] = self.ctx.python_path
        for volume in spec.get("volumes") or []:
            if "emptyDir" in volume:
                base[envs.volume_variable(volume["name"])] = str(
                    self.dir / "volumes" / volume["name"]
                )
        lookup = self._lookup(pod["metadata"]["namespace"])
        own = envs.container_env(pod, slot.spec, lookup, self.pod_ip, self.ctx.host_ip)
        # $(VAR) in command and args sees the pod spec's variables only, as in Kubernetes.
        return {**base, **own}, envs.command_line(slot.spec, own)

    def _start(self, slot: _Slot, pod: dict[str, Any]) -> None:
        record = slot.record
        try:
            env, argv = self._environment(slot, pod)
        except envs.ConfigError as error:
            record.state, record.reason, record.message = (
                "waiting",
                "CreateContainerConfigError",
                str(error),
            )
            slot.next_start = time.monotonic() + CONFIG_RETRY_SECONDS
            return
        slot.env = env
        workdir = self.dir / "wd" / envs.flatten(slot.spec.get("workingDir", ""))
        workdir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "logs" / f"{record.name}.log"
        slot.log_offset = log.stat().st_size if log.exists() else 0
        (self.dir / "termination" / record.name).write_bytes(b"")
        if slot.runs:
            record.restart_count += 1
        slot.runs += 1
        record.started_at, record.finished_at, record.exit_code = stamp(), None, None
        try:
            slot.popen = proc.spawn(argv, env, workdir, log)
        except OSError as error:
            # containerd's words for a command that cannot be executed.
            record.pid = None
            message = f"failed to start {argv[0]!r}: {error.strerror or error}"
            self._finished(slot, 128, pod, reason="StartError", message=message)
            return
        record.pid = slot.popen.pid
        record.state, record.reason, record.message = "running", "", ""
        probe = slot.spec.get("readinessProbe")
        record.ready = not slot.init and not probe
        slot.probe_ok = slot.probe_fail = 0
        slot.probe_due = time.monotonic() + float((probe or {}).get("initialDelaySeconds", 0))
        LOG.info("pod %s: started %s (pid %s): %s", self.key, record.name, record.pid, argv)

    # -- progress -------------------------------------------------------------------------

    def _advance(self, pod: dict[str, Any]) -> None:
        for slot in self.slots:
            if slot.init and st.initialized([slot.record]):
                continue
            self._step(slot, pod)
            if slot.init and not st.initialized([slot.record]):
                return  # init containers run one at a time, in order

    def _step(self, slot: _Slot, pod: dict[str, Any]) -> None:
        if slot.popen is not None:
            code = slot.popen.poll()
            if code is None:
                return
            self._reaped(slot, code, pod)
        if slot.next_start is not None and time.monotonic() >= slot.next_start:
            self._start(slot, pod)

    def _reaped(self, slot: _Slot, code: int, pod: dict[str, Any], restart: bool = True) -> None:
        assert slot.popen is not None
        # Like a container runtime, take down whatever the process left in its group.
        proc.signal_group(slot.popen.pid, signal.SIGKILL)
        slot.popen = None
        self._finished(slot, proc.exit_code(code), pod, restart=restart)

    def _finished(
        self,
        slot: _Slot,
        exit_code: int,
        pod: dict[str, Any],
        reason: str | None = None,
        message: str | None = None,
        restart: bool = True,
    ) -> None:
        record = slot.record
        name = record.name
        if message is None:
            term = self.dir / "termination" / name
            log = self.dir / "logs" / f"{name}.log"
            message = st.termination_message(
                proc.read_tail(term, 0, st.TERMINATION_MESSAGE_LIMIT),
                proc.read_tail(log, slot.log_offset, 64 * 1024),
                slot.spec.get("terminationMessagePolicy", "File"),
                exit_code,
            )
        record.state, record.exit_code = "terminated", exit_code
        record.reason, record.message = reason or st.exit_reason(exit_code), message
        record.finished_at, record.ready = stamp(), slot.init and exit_code == 0
        LOG.info("pod %s: %s exited with %s", self.key, name, exit_code)
        policy = pod["spec"].get("restartPolicy", "Always")
        again = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
        if slot.init:
            again = policy != "Never" and exit_code != 0
        if not restart or not again or self.phase_override:
            slot.next_start = None
            return
        delay = slot.backoff
        slot.backoff = min(delay * 2, BACKOFF_MAX_SECONDS)
        slot.next_start = time.monotonic() + delay
        record.last_state = record.terminated()
        record.state, record.reason = "waiting", "CrashLoopBackOff"
        record.message = (
            f"back-off {delay:g}s restarting failed container={name} "
            f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({self.uid})"
        )

    def _check_deadline(self, pod: dict[str, Any]) -> None:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is None or self.phase_override:
            return
        if time.monotonic() - self._start_mono < float(deadline):
            return
        LOG.info("pod %s: activeDeadlineSeconds passed", self.key)
        self.phase_override, self.reason = "Failed", "DeadlineExceeded"
        self.message = DEADLINE_MESSAGE
        self._stop_all(self._grace(pod), restart=False)
        for slot in self.slots:
            slot.next_start = None

    def _grace(self, pod: dict[str, Any]) -> float:
        value = pod["metadata"].get("deletionGracePeriodSeconds")
        if value is None:
            value = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(min(int(value), MAX_GRACE_SECONDS))

    def _stop_all(self, grace: float, restart: bool) -> None:
        """SIGTERM every process group, SIGKILL what is left after ``grace`` seconds."""
        running = [s for s in self.slots if s.popen is not None]
        for slot in running:
            assert slot.popen is not None
            proc.signal_group(slot.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(s.popen.poll() is None for s in running if s.popen):
            if time.monotonic() > deadline:
                for slot in running:
                    if slot.popen is not None:
                        proc.signal_group(slot.popen.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        for slot in running:
            if slot.popen is not None:
                code = slot.popen.wait()
                with self._lock:
                    pod = self._pod
                self._reaped(slot, code, pod, restart=restart)

    # -- probes ---------------------------------------------------------------------------

    def _probe(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            probe = slot.spec.get("readinessProbe")
            if slot.init or not probe or slot.popen is None or now < slot.probe_due:
                continue
            slot.probe_due = now + float(probe.get("periodSeconds", 10))
            cwd = self.dir / "wd"
            if proc.probe(probe, slot.spec, self.pod_ip, slot.env, cwd):
                slot.probe_ok, slot.probe_fail = slot.probe_ok + 1, 0
                if slot.probe_ok >= int(probe.get("successThreshold", 1)):
                    slot.record.ready = True
            else:
                slot.probe_ok, slot.probe_fail = 0, slot.probe_fail + 1
                if slot.probe_fail >= int(probe.get("failureThreshold", 3)):
                    slot.record.ready = False

    # -- status and deletion --------------------------------------------------------------

    def _write_status(self, pod: dict[str, Any]) -> str:
        init = [s.record for s in self.slots if s.init]
        main = [s.record for s in self.slots if not s.init]
        policy = pod["spec"].get("restartPolicy", "Always")
        phase = self.phase_override or st.pod_phase(init, main, policy, self.terminating)
        # Our own last conditions win over a listed pod that may predate our last patch.
        previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        previous.update({c["type"]: c for c in (self._sent or {}).get("conditions", [])})
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        status = st.pod_status(
            phase=phase,
            conditions=st.conditions(list(previous.values()), init, main, phase, gates, stamp()),
            init=init,
            main=main,
            pod_ip=self.pod_ip,
            host_ip=self.ctx.host_ip,
            start_time=self.start_time,
            reason=self.reason,
            message=self.message,
        )
        if status != self._sent:
            self._patch_status(pod, status)
            self._sent = status
        return phase

    def _patch_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        # The uid makes the API server refuse the patch if the pod was replaced by a namesake.
        self.ctx.kube.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            body={"metadata": {"uid": self.uid}, "status": status},
            content_type="application/strategic-merge-patch+json",
        )

    def _mark_lost(self, pod: dict[str, Any]) -> None:
        self._patch_status(pod, st.lost_pod_status(pod.get("status") or {}, stamp()))
        LOG.info("pod %s: marked Failed (NodeAgentRestarted)", self.key)
        self.mode = "done"

    def _delete(self, pod: dict[str, Any]) -> None:
        if self.mode == "run":
            if not self.terminating:
                LOG.info("pod %s: deleted, stopping its processes", self.key)
                self._stop_all(self._grace(pod), restart=False)
                for slot in self.slots:
                    slot.next_start = None
                self.terminating = True
            self._write_status(pod)
        now = time.monotonic()
        if self._delete_sent is not None and now - self._delete_sent < DELETE_RETRY_SECONDS:
            return
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.ctx.kube.request(
                "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body=body
            )
        except kube_client.ApiException as error:
            if error.status not in (404, 409):
                raise
        self._delete_sent = now
