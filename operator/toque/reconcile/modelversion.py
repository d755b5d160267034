"""Decides the rollout of every ModelVersion of one model at once. Pure: no I/O.

Called by ``handlers.modelversion`` with all versions of a model in a namespace, their
Deployments and pods, and (when this function asked for one) the analysis results. One
decision over the whole model keeps the invariants in one place: at most one version is
Promoted (the stable), at most one rolls out at a time (the others queue), and traffic only
leaves the stable for a canary with ready pods.

Traffic moves by admitting ready pods to the model's Service (pod label
``toque.dev/traffic``), so the canary's share is its share of admitted pods; abort and
rollback withdraw the canary's pods at once, before anything is scaled down.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from toque.api import conditions as cond
from toque.api import constants, schema
from toque.api import modelversion as mv
from toque.core import exitcodes
from toque.reconcile import analysis as an
from toque.reconcile import kubestatus, registration
from toque.resources import names, pods, serving

REGISTERED = "Registered"
QUEUED = "Queued"
PROGRESSING = "Progressing"
ANALYSIS = "AnalysisPassed"
AVAILABLE = "Available"

UNSETTLED = ("Registering", "Pending", "Progressing", "Paused", None)
TERMINAL = ("Promoted", "Superseded", "RolledBack", "Aborted", "Failed")
ACTIVE = ("Progressing", "Paused")
MAX_ANALYSIS_RUNS = 100
# How far back the stable's predictions count as the reference for the prediction shift.
STABLE_REFERENCE_SECONDS = 3600
POLL_SECONDS = 3.0
QUEUE_POLL_SECONDS = 10.0
# The longest a handler waits before it looks at an unsettled version again.
MAX_LOOK_AGAIN_SECONDS = 30.0
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Version:
    """One ModelVersion and what serves it."""

    name: str
    uid: str
    generation: int
    created: str
    spec: dict[str, Any]
    # As observed (JSON); the plan reads it as ``mv.ModelVersionStatus`` and writes back
    # the merge-patch form of that model in ``Plan.statuses``.
    status: dict[str, Any]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deployment: dict[str, Any] | None = None
    pods: Sequence[dict[str, Any]] = ()
    # Filled by the handler only while the version is not registered yet.
    source: registration.Source | None = None
    registry_version: str | None = None
    waiting: str | None = None  # the source is not ready yet (its TrainingJob still runs)
    error: str | None = None  # permanent: the source failed, the registry refused it
    registry_error: str | None = None  # transient: the registry is unreachable
    # Being deleted (our finalizer holds it): its traffic and alias must go elsewhere first.
    deleting: bool = False


@dataclasses.dataclass(frozen=True)
class Observed:
    namespace: str
    model: str
    versions: Sequence[Version]
    # Results of the analysis this function asked for (None: not run this cycle).
    analysis: Mapping[str, an.Outcome] | None = None
    analysis_error: str | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    build: pods.BuildConfig = dataclasses.field(default_factory=pods.BuildConfig)
    # PromQL windows never shorter than this (a few scrape intervals), whatever the interval.
    min_window_seconds: int = 60
    prometheus_configured: bool = True


@dataclasses.dataclass(frozen=True)
class Event:
    version: str
    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class AnalysisRequest:
    """The checks to measure now: the handler runs their ``queries`` and hands the answers
    to ``outcomes``."""

    version: str
    step: int
    checks: Sequence[an.Check]
    spec: mv.Analysis


def outcomes(request: AnalysisRequest, answers: Mapping[str, an.Answer]) -> dict[str, an.Outcome]:
    """Every check's verdict from what Prometheus answered (never raises)."""
    return an.evaluate_all(request.checks, answers, request.spec)


@dataclasses.dataclass
class Plan:
    # Status merge patches by version (``kubestatus.dump``: null clears a field).
    statuses: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    deployments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    services: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    routes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # (pod name, admit to traffic)
    pod_traffic: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    # (alias, registry version): moved before any status is written
    aliases: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Aliases to delete: the version they named is gone and nothing took its place.
    removed_aliases: list[str] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    analysis: AnalysisRequest | None = None
    requeue_after: float | None = None

    def wake(self, seconds: float) -> None:
        seconds = max(seconds, 1.0)
        self.requeue_after = min(self.requeue_after or seconds, seconds)


def needs_registration(v: Version) -> bool:
    """Whether the handler must resolve the version's source and register it in MLflow."""
    if v.deleting:
        return False
    status = kubestatus.parse(mv.ModelVersionStatus, v.status)
    registered = status.registry is not None and bool(status.registry.version)
    return not registered and status.phase not in TERMINAL


def look_again(plan: Plan, name: str) -> tuple[float, str] | None:
    """(seconds, why) until the handler of version ``name`` must look again, or None when
    it is settled: an unsettled rollout changes with time and pods, not only with events."""
    phase = (plan.statuses.get(name) or {}).get("phase")
    if phase not in UNSETTLED:
        return None
    delay = min(plan.requeue_after or QUEUE_POLL_SECONDS, MAX_LOOK_AGAIN_SECONDS)
    return delay, f"{phase or 'new'}: looking again"


class _State:
    """Mutable view of one version's status while the plan is made."""

    def __init__(self, v: Version, now: dt.datetime) -> None:
        self.v = v
        self.status = kubestatus.parse(mv.ModelVersionStatus, v.status)
        self.conditions = list(self.status.conditions)
        self.now = now
        self.spec: mv.ModelVersionSpec | None
        try:
            self.spec = mv.ModelVersionSpec.model_validate(v.spec)
            self.spec_error = ""
        except pydantic.ValidationError as error:
            self.spec = None
            self.spec_error = str(error).splitlines()[0]
        self.weight = 0
        self.replicas = 0

    @property
    def phase(self) -> mv.Phase | None:
        return self.status.phase

    def set(self, type_: str, status: cond.ConditionStatus, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.v.generation, self.now
        )

    def to_phase(self, phase: mv.Phase, message: str) -> None:
        self.status.phase = phase
        self.status.message = message

    @property
    def message(self) -> str:
        return self.status.message or ""

    @property
    def registry_version(self) -> str | None:
        reg = self.status.registry
        return reg.version if reg and reg.version else None

    def set_alias(self, alias: str | None) -> None:
        """The registry alias this version holds (None: written as null, so it is removed)."""
        registry = (
            self.status.registry.model_copy() if self.status.registry else mv.RegistryStatus()
        )
        registry.alias = alias
        self.status.registry = registry

    @property
    def replicas_wanted(self) -> int:
        return self.spec.serving.replicas if self.spec and self.spec.serving else 1

    def finish(self) -> dict[str, Any]:
        self.status.observed_generation = self.v.generation
        self.status.conditions = self.conditions
        return kubestatus.dump(self.status)


def steps_hash(steps: Sequence[mv.RolloutStep]) -> str:
    raw = json.dumps([s.to_kube() for s in steps], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def canary_replicas(replicas: int, weight: int) -> int:
    """Canary pods for a weight: at least one as soon as the weight is above zero."""
    if weight <= 0:
        return 0
    return min(replicas, max(1, math.ceil(replicas * weight / 100)))


def stable_admitted(stable_ready: int, canary_ready: int, weight: int) -> int:
    """How many ready stable pods take traffic beside ``canary_ready`` canary pods.

    The stable keeps all its traffic until a canary pod is ready, and at least one pod
    until the weight reaches 100, so a canary never takes more than asked by accident.
    """
    if canary_ready == 0 or weight <= 0:
        return stable_ready
    if weight >= 100:
        return 0
    wanted = round(canary_ready * (100 - weight) / weight)
    return min(stable_ready, max(1, wanted))


def route_weight(weight: int, canary_ready: int, canary_wanted: int) -> int:
    """The canary's HTTPRoute weight: the step's weight once its pods are ready, a share of
    it while they come up, and zero while none is ready (a gateway would answer 5xx for a
    backend without endpoints)."""
    if weight <= 0 or canary_ready <= 0:
        return 0
    if canary_ready >= canary_wanted:
        return weight
    return max(1, weight * canary_ready // canary_wanted)


def _ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _live_pods(v: Version) -> list[dict[str, Any]]:
    pods = [p for p in v.pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(pods, key=lambda p: str(p["metadata"]["name"]))


# ``toque serve`` exits 3 when it must not serve (digest mismatch, no such model): no
# restart will help. Other crashes get a few restarts before the version is given up.
PERMANENT_EXIT_CODE = exitcodes.PERMANENT
MAX_RESTARTS = 3


def broken(v: Version) -> str | None:
    """Why the version's server cannot run, from its pods' container statuses."""
    for p in _live_pods(v):
        name = p["metadata"]["name"]
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            for state in (cs.get("state"), cs.get("lastState")):
                term = (state or {}).get("terminated") or {}
                if term.get("exitCode") == PERMANENT_EXIT_CODE:
                    tail = str(term.get("message") or "").strip()[-500:]
                    return f"pod {name}: the model server refused to start: {tail}".strip()
            restarts = int(cs.get("restartCount") or 0)
            if restarts >= MAX_RESTARTS and not cs.get("ready"):
                term = (cs.get("lastState") or {}).get("terminated") or {}
                tail = str(term.get("message") or term.get("reason") or "").strip()[-500:]
                return f"pod {name}: the model server crashed {restarts} times: {tail}"
    return None


def _action(v: Version, state: _State) -> str | None:
    value = v.annotations.get(constants.ANNOTATION_ACTION)
    if not value or value == state.status.last_action:
        return None
    state.status.last_action = value
    return value.split(":", 1)[0].strip().lower()


class _Planner:
    def __init__(self, observed: Observed, config: Config, now: dt.datetime) -> None:
        self.o = observed
        self.config = config
        self.now = now
        self.plan = Plan()
        self.versions = sorted(observed.versions, key=lambda v: (v.created, v.name))
        self.states = {v.name: _State(v, now) for v in self.versions}
        self.stable: _State | None = None
        self.active: _State | None = None
        self.verbs: dict[str, str] = {}
        # One analysis result per cycle, for the step that asked for it.
        self.results = observed.analysis
        self.canary_route_weight = 0

    def event(self, s: _State, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(s.v.name, type_, reason, message))

    # -- registration -------------------------------------------------------------------

    def register(self, s: _State) -> None:
        v = s.v
        if s.phase in TERMINAL or s.registry_version or v.deleting:
            return
        if s.spec is None:
            s.to_phase("Failed", f"invalid spec: {s.spec_error}")
            s.set(REGISTERED, "False", "InvalidSpec", s.spec_error)
            self.event(s, "Warning", "InvalidSpec", s.spec_error)
            return
        if v.error:
            s.to_phase("Failed", v.error)
            s.set(REGISTERED, "False", "SourceFailed", v.error)
            self.event(s, "Warning", "RegistrationFailed", v.error)
            return
        if v.registry_version and v.source:
            registered = names.registry_name(self.o.namespace, s.spec.model)
            s.status.registry = mv.RegistryStatus(name=registered, version=v.registry_version)
            s.status.model_uri = v.source.model_uri
            s.status.model_digest = v.source.digest
            s.status.run_id = v.source.run_id
            s.set(
                REGISTERED,
                "True",
                "Registered",
                f"registered as {registered} version {v.registry_version}",
            )
            self.event(s, "Normal", "Registered", f"{registered} version {v.registry_version}")
            return
        reason, message = "WaitingForSource", v.waiting or "resolving the model source"
        if v.registry_error:
            reason, message = "RegistryUnavailable", v.registry_error
        s.to_phase("Registering", message)
        s.set(REGISTERED, "Unknown" if v.registry_error else "False", reason, message)
        self.plan.wake(10 if v.registry_error else 5)

    # -- roles ---------------------------------------------------------------------------

    def find_roles(self) -> None:
        promoted = [s for s in self.states.values() if s.phase == "Promoted"]
        promoted.sort(key=lambda s: kubestatus.utc(s.status.promoted_at) or _EPOCH)
        for extra in promoted[:-1]:  # never more than one stable; the latest promotion wins
            extra.to_phase("Superseded", f"superseded by {promoted[-1].v.name}")
        self.stable = promoted[-1] if promoted else None
        active = [s for s in self.states.values() if s.phase in ACTIVE]
        self.active = active[0] if active else None
        for extra in active[1:]:
            extra.to_phase("Pending", "queued again: another rollout of this model runs")

    # -- deletion --------------------------------------------------------------------------

    def retire_deleted(self) -> None:
        """A deleted stable hands traffic and alias to its warm predecessor; with none, the
        alias is removed rather than left naming a version nobody serves."""
        for s in self.states.values():
            if not s.v.deleting:
                continue
            if s is self.active:
                self.active = None
            if s is not self.stable:
                continue
            self.stable = None
            previous = self.states.get(s.status.previous or "")
            alias = s.spec.alias if s.spec else None
            usable = (
                previous is not None
                and not previous.v.deleting
                and previous.phase == "Superseded"
                and previous.registry_version
            )
            if previous is not None and usable:
                why = f"serving again: the live version {s.v.name} was deleted"
                previous.to_phase("Promoted", why)
                previous.status.promoted_at = self.now
                previous.set(AVAILABLE, "True", "Restored", why)
                if alias and previous.registry_version:
                    self.plan.aliases.append((alias, previous.registry_version))
                    previous.set_alias(alias)
                self.event(previous, "Normal", "Restored", why)
                self.stable = previous
            elif alias:
                self.plan.removed_aliases.append(alias)

    # -- manual actions ------------------------------------------------------------------

    def actions(self) -> None:
        for s in self.states.values():
            verb = None if s.v.deleting else _action(s.v, s)
            if verb is None:
                continue
            if s is self.active and verb in ("promote", "resume", "abort", "rollback"):
                self.verbs[s.v.name] = verb
                self.event(s, "Normal", "ActionReceived", f"{verb} requested")
            elif s is self.stable and verb == "rollback":
                self.rollback_stable(s)
            else:
                message = f"{verb} does not apply to a version in phase {s.phase or 'Pending'}"
                self.event(s, "Warning", "ActionIgnored", message)

    def rollback_stable(self, s: _State) -> None:
        previous = self.states.get(s.status.previous or "")
        if self.active is not None:
            message = f"rollback refused: the rollout of {self.active.v.name} runs; abort it first"
            self.event(s, "Warning", "ActionIgnored", message)
            return
        if previous is None or previous.phase != "Superseded" or not previous.registry_version:
            self.event(s, "Warning", "ActionIgnored", "rollback: no previous version to return to")
            return
        s.to_phase("RolledBack", f"rolled back by hand to {previous.v.name}")
        s.set(PROGRESSING, "False", "RolledBack", f"traffic returned to {previous.v.name}")
        previous.to_phase("Promoted", f"serving again after the rollback of {s.v.name}")
        previous.status.promoted_at = self.now
        if s.spec and s.spec.alias:
            self.plan.aliases.append((s.spec.alias, previous.registry_version))
            previous.set_alias(s.spec.alias)
            s.set_alias(None)
        self.event(s, "Warning", "RolledBack", f"rolled back by hand to {previous.v.name}")
        self.event(previous, "Normal", "Restored", f"serving again after {s.v.name}")
        self.stable = previous

    # -- rollout -------------------------------------------------------------------------

    def start_next(self) -> None:
        if self.active is not None:
            return
        for s in self.states.values():
            if s.v.deleting:
                continue
            if s.phase in ("Pending", "Registering", None) and s.registry_version and s.spec:
                steps = (s.spec.rollout.steps if s.spec.rollout else None) or []
                s.to_phase("Progressing", "starting")
                s.status.current_step = 0
                s.status.step_started_at = self.now
                s.status.steps_hash = steps_hash(steps)
                s.status.failure_counts = {}
                s.status.analysis_runs = []
                s.status.last_analysis_at = None
                s.status.stable_version = self.stable.v.name if self.stable else None
                s.status.canary_weight = 0
                s.set(QUEUED, "False", "Started", "the rollout started")
                what = f"canary against {self.stable.v.name}" if self.stable else "first version"
                self.event(s, "Normal", "RolloutStarted", what)
                self.active = s
                return

    def queue_rest(self) -> None:
        for s in self.states.values():
            if s is self.active or not s.registry_version or s.phase in TERMINAL or s.v.deleting:
                continue
            if s.phase in ("Pending", "Registering", None):
                busy = self.active.v.name if self.active else "another version"
                message = f"waiting for the rollout of {busy} of model {self.o.model} to finish"
                if s.phase != "Pending":
                    self.event(s, "Normal", "Queued", message)
                s.to_phase("Pending", message)
                s.set(QUEUED, "True", "WaitingForRollout", message)
                self.plan.wake(QUEUE_POLL_SECONDS)

    def progress(self) -> None:
        s = self.active
        if s is None or s.spec is None:
            return
        verb = self.verbs.pop(s.v.name, None)
        if verb in ("abort", "rollback"):
            phase: mv.Phase = "Aborted" if verb == "abort" else "RolledBack"
            self.end_canary(s, phase, f"{verb} by hand", "Manual")
            return
        problem = broken(s.v)
        if problem:
            self.end_canary(s, "Failed", problem, "ServerFailed")
            return
        if self.stable is None:
            self.promote_when_ready(s, "first version of the model, no canary")
            return
        steps = (s.spec.rollout.steps if s.spec.rollout else None) or [
            mv.RolloutStep(set_weight=100)
        ]
        if s.status.steps_hash != steps_hash(steps):
            s.status.current_step = 0
            s.status.steps_hash = steps_hash(steps)
            s.status.step_started_at = self.now
            self.event(s, "Normal", "StepsChanged", "the steps changed: starting again at step 0")
        index = s.status.current_step or 0
        if verb == "promote":
            index = len(steps)
            s.status.current_step = index
        elif verb == "resume" and index < len(steps) and steps[index].pause is not None:
            index = self.advance(s, index)
        while True:
            if index >= len(steps):
                self.promote_when_ready(s, "all steps passed")
                return
            step = steps[index]
            weight = _weight_at(steps, index)
            self.set_weight(s, weight)
            ready = self.canary_ready(s)
            wanted = canary_replicas(s.replicas_wanted, weight)
            if ready < wanted:
                s.to_phase("Progressing", f"step {index}: {ready}/{wanted} canary pods ready")
                s.set(PROGRESSING, "True", "ScalingCanary", s.message)
                self.plan.wake(POLL_SECONDS)
                return
            verdict = self.analyse(s, index)
            if verdict == "failed":
                return
            if step.set_weight is not None:
                if verdict in ("passed", "none"):
                    index = self.advance(s, index)
                    continue
                s.to_phase("Progressing", f"step {index}: weight {weight}%, analysing")
                s.set(PROGRESSING, "True", "Analysing", s.message)
                return
            pause = step.pause or mv.PauseStep()
            if pause.duration is None:
                s.to_phase("Paused", f"step {index}: paused until promoted or resumed")
                s.set(PROGRESSING, "True", "PausedByStep", s.message)
                return
            started = kubestatus.utc(s.status.step_started_at) or self.now
            left = (started - self.now).total_seconds() + schema.duration_seconds(pause.duration)
            if left > 0:
                s.to_phase("Paused", f"step {index}: paused, {math.ceil(left)}s left")
                s.set(PROGRESSING, "True", "PausedByStep", f"pause of {pause.duration}")
                self.plan.wake(left)
                return
            index = self.advance(s, index)

    def advance(self, s: _State, index: int) -> int:
        s.status.current_step = index + 1
        s.status.step_started_at = self.now
        self.event(s, "Normal", "StepCompleted", f"step {index} done")
        return index + 1

    def set_weight(self, s: _State, weight: int) -> None:
        if s.status.canary_weight != weight:
            self.event(s, "Normal", "WeightSet", f"canary weight {weight}%")
        s.status.canary_weight = weight
        s.weight = weight
        s.replicas = canary_replicas(s.replicas_wanted, weight)

    def canary_ready(self, s: _State) -> int:
        return sum(1 for p in _live_pods(s.v) if _ready(p))

    def promote_when_ready(self, s: _State, why: str) -> None:
        """All of the version's pods in traffic, then promote it."""
        self.set_weight(s, 100)
        ready = self.canary_ready(s)
        if ready < s.replicas_wanted:
            message = f"promoting ({why}): {ready}/{s.replicas_wanted} pods ready"
            s.to_phase("Progressing", message)
            s.set(PROGRESSING, "True", "WaitingForPods", message)
            self.plan.wake(POLL_SECONDS)
            return
        self.promote(s, why)

    def promote(self, s: _State, why: str) -> None:
        assert s.spec is not None
        old = self.stable
        s.to_phase("Promoted", why)
        s.status.promoted_at = self.now
        s.status.previous = old.v.name if old else None
        s.status.stable_version = None
        s.set(PROGRESSING, "False", "Promoted", why)
        s.set(AVAILABLE, "True", "Serving", "takes all the model's traffic")
        if s.spec.alias and s.registry_version:
            self.plan.aliases.append((s.spec.alias, s.registry_version))
            s.set_alias(s.spec.alias)
        elif s.status.registry is None:
            s.status.registry = mv.RegistryStatus()
        self.event(s, "Normal", "Promoted", why)
        if old is not None:
            old.to_phase("Superseded", f"superseded by {s.v.name}; kept warm for a rollback")
            old.set_alias(None)
            old.set(AVAILABLE, "False", "Superseded", f"{s.v.name} takes the traffic")
            self.event(old, "Normal", "Superseded", f"superseded by {s.v.name}")
        self.stable = s
        self.active = None

    def end_canary(self, s: _State, phase: mv.Phase, why: str, reason: str) -> None:
        s.to_phase(phase, why)
        s.status.canary_weight = 0
        s.weight = 0
        s.replicas = 0
        s.set(PROGRESSING, "False", reason, why)
        s.set(AVAILABLE, "False", phase, "the canary takes no traffic")
        self.event(s, "Warning", phase, why)
        self.active = None

    # -- analysis ------------------------------------------------------------------------

    def analyse(self, s: _State, index: int) -> str:
        """'none' (no analysis asked), 'passed', 'failed' (rolled back), 'waiting'."""
        assert s.spec is not None
        spec = s.spec.rollout.analysis if s.spec.rollout else None
        if spec is None:
            return "none"
        interval = schema.duration_seconds(spec.interval)
        last = kubestatus.utc(s.status.last_analysis_at)
        started = kubestatus.utc(s.status.step_started_at) or self.now
        since = max(started, last) if last else started
        due_in = (since - self.now).total_seconds() + interval
        results = self.results
        if due_in > 0 and results is None:
            self.plan.wake(due_in)
            return "waiting"
        assert self.stable is not None
        window = int(max(interval, self.config.min_window_seconds))
        live_since = kubestatus.utc(self.stable.status.promoted_at) or self.now
        reference = min((self.now - live_since).total_seconds(), STABLE_REFERENCE_SECONDS)
        target = an.Target(
            namespace=self.o.namespace,
            model=self.o.model,
            canary_version=s.registry_version or "",
            stable_version=self.stable.registry_version,
            window_seconds=window,
            stable_window_seconds=int(max(window, reference)),
        )
        checks = an.checks(spec, target)
        if results is None:
            if not self.config.prometheus_configured:
                s.set(ANALYSIS, "Unknown", "NoPrometheus", "the operator has no Prometheus URL")
                self.plan.wake(interval)
                return "waiting"
            self.plan.analysis = AnalysisRequest(s.v.name, index, checks, spec)
            return "waiting"
        self.results = None
        s.status.last_analysis_at = self.now
        self.plan.wake(interval)
        if self.o.analysis_error:
            s.set(ANALYSIS, "Unknown", "PrometheusUnavailable", self.o.analysis_error)
            return "waiting"
        return self.record(s, index, checks, results)

    def record(
        self, s: _State, index: int, checks: Sequence[an.Check], results: Mapping[str, an.Outcome]
    ) -> str:
        runs = list(s.status.analysis_runs or [])
        counts = dict(s.status.failure_counts or {})
        failed: list[str] = []
        pending: list[str] = []
        invalid = [
            f"{c.name}: {results[c.name].message}"
            for c in checks
            if c.name in results and results[c.name].invalid
        ]
        for check in checks:
            out = results.get(check.name) or an.Outcome(check.name, None, None, "not measured")
            run = mv.AnalysisRun(
                step=index, check=check.name, message=out.message[:1000], time=self.now
            )
            if out.passed is not None:
                run.passed = out.passed
            if out.value is not None and math.isfinite(out.value):
                run.value = out.value
            runs.append(run)
            if out.passed is None:
                pending.append(f"{check.name}: {out.message}")
            elif not out.passed:
                counts[check.name] = counts.get(check.name, 0) + 1
                if counts[check.name] > check.failure_limit:
                    failed.append(f"{check.name}: {out.message}")
        s.status.analysis_runs = runs[-MAX_ANALYSIS_RUNS:]
        s.status.failure_counts = counts
        if invalid:
            # Retrying cannot fix a check that cannot be evaluated: stop with the reason.
            why = f"analysis cannot run at step {index}: " + "; ".join(invalid)
            s.set(ANALYSIS, "False", "InvalidCheck", why)
            self.end_canary(s, "RolledBack", why, "InvalidAnalysis")
            return "failed"
        if failed:
            why = f"analysis failed at step {index}: " + "; ".join(failed)
            s.set(ANALYSIS, "False", "CheckFailed", why)
            self.end_canary(s, "RolledBack", why, "AnalysisFailed")
            return "failed"
        if pending:
            s.set(ANALYSIS, "Unknown", "Inconclusive", "; ".join(pending))
            return "waiting"
        if any(not (results.get(c.name) and results[c.name].passed) for c in checks):
            s.set(ANALYSIS, "Unknown", "FailedWithinLimit", "a check failed within its limit")
            return "waiting"
        s.set(ANALYSIS, "True", "Passed", f"{len(checks)} checks passed at step {index}")
        return "passed"

    # -- desired objects -----------------------------------------------------------------

    def serving_objects(self) -> None:
        stable, active = self.stable, self.active
        warm = (stable.status.previous or "") if stable else ""
        owners: list[serving.Owner] = []
        for s in self.states.values():
            if not s.registry_version or s.spec is None or not s.status.model_uri:
                continue
            if s.v.deleting:
                continue  # the garbage collector removes its Deployment with it
            owner = serving.Owner(s.v.name, self.o.namespace, s.v.uid)
            if s is stable or (s.v.name == warm and s.phase == "Superseded"):
                replicas = s.replicas_wanted
            elif s is active:
                replicas = s.replicas
            else:
                replicas = 0
            if replicas == 0 and s.v.deployment is None:
                continue
            owners.append(owner)
            served = serving.Served(
                model=s.spec.model,
                registry_version=s.registry_version,
                model_uri=s.status.model_uri,
                digest=s.status.model_digest,
                allow_unverified=s.spec.source.allow_unverified,
            )
            self.plan.deployments.append(
                serving.deployment(owner, s.spec, served, replicas, self.config.build)
            )
        if owners:
            self.plan.services.append(serving.model_service(self.o.namespace, self.o.model, owners))
        self.traffic()
        self.route(owners)

    def gateway_mode(self) -> bool:
        """Whether an HTTPRoute splits the traffic (set by the version that leads)."""
        leader = self.active or self.stable
        if leader is None or leader.spec is None or leader.spec.rollout is None:
            return False
        traffic = leader.spec.rollout.traffic
        return traffic is not None and traffic.mode == "gatewayAPI" and bool(traffic.parent_refs)

    def traffic(self) -> None:
        """Admit pods to the model's Service. With an HTTPRoute the route alone splits the
        traffic: the Service keeps the stable's pods only (like Argo Rollouts' stable
        Service), so in-cluster callers never reach an unanalysed canary."""
        stable, active = self.stable, self.active
        gateway = self.gateway_mode() and stable is not None
        canary_on = active is not None and (stable is None or (active.weight > 0 and not gateway))
        canary_ready = 0
        if active is not None and canary_on:
            canary_ready = sum(1 for p in _live_pods(active.v) if _ready(p))
        admit: dict[str, bool] = {}
        stable_on = 0
        if stable is not None:
            ready = [p for p in _live_pods(stable.v) if _ready(p)]
            weight = active.weight if active is not None else 0
            stable_on = stable_admitted(len(ready), canary_ready, weight)
            on = {str(p["metadata"]["name"]) for p in ready[:stable_on]}
            for p in _live_pods(stable.v):
                name = str(p["metadata"]["name"])
                # Not-ready stable pods stay admitted: the endpoints skip them anyway, and
                # they take traffic the moment they are ready (a restart must not shrink it).
                admit[name] = name in on or (not _ready(p) and canary_ready == 0)
        for s in self.states.values():
            if s is stable:
                continue
            for p in _live_pods(s.v):
                admit[str(p["metadata"]["name"])] = s is active and canary_on
        for s in self.states.values():
            for p in _live_pods(s.v):
                name = str(p["metadata"]["name"])
                labels = (p.get("metadata") or {}).get("labels") or {}
                want = serving.TRAFFIC_ON if admit.get(name) else serving.TRAFFIC_OFF
                if labels.get(constants.LABEL_TRAFFIC) != want:
                    self.plan.pod_traffic.append((name, want == serving.TRAFFIC_ON))
        if active is not None and stable is not None and gateway:
            ready_now = sum(1 for p in _live_pods(active.v) if _ready(p))
            wanted = canary_replicas(active.replicas_wanted, active.weight)
            self.canary_route_weight = route_weight(active.weight, ready_now, wanted)
            active.status.actual_canary_weight = self.canary_route_weight
        elif active is not None and stable is not None:
            total = canary_ready + stable_on
            active.status.actual_canary_weight = round(100 * canary_ready / total) if total else 0
        elif active is not None:
            active.status.actual_canary_weight = 100 if canary_ready else 0
        if stable is not None:
            stable.status.actual_canary_weight = None
            stable.status.canary_weight = None

    def route(self, owners: list[serving.Owner]) -> None:
        stable, active = self.stable, self.active
        leader = active or stable
        if not self.gateway_mode() or leader is None or leader.spec is None:
            return
        traffic = leader.spec.rollout.traffic if leader.spec.rollout else None
        assert traffic is not None and traffic.parent_refs
        weights: list[tuple[str, int]] = []
        parties = [p for p in (stable, active) if p is not None]
        for p in parties:
            self.plan.services.append(
                serving.version_service(serving.Owner(p.v.name, self.o.namespace, p.v.uid))
            )
        if stable is not None and active is not None:
            canary = self.canary_route_weight
            weights = [(stable.v.name, 100 - canary), (active.v.name, canary)]
        else:
            weights = [(parties[0].v.name, 100)]
        self.plan.routes.append(
            serving.http_route(self.o.namespace, self.o.model, traffic.parent_refs, weights, owners)
        )

    def run(self) -> Plan:
        for s in self.states.values():
            self.register(s)
        self.find_roles()
        self.retire_deleted()
        self.actions()
        self.start_next()
        self.progress()
        if self.active is None:
            self.start_next()  # the queue moves on as soon as a rollout ends
            self.progress()
        self.queue_rest()
        self.serving_objects()
        for s in self.states.values():
            if s.phase == "Promoted":
                ready = sum(1 for p in _live_pods(s.v) if _ready(p))
                s.set(AVAILABLE, "True" if ready else "False", "Serving", f"{ready} pods ready")
            if not s.v.deleting:
                self.plan.statuses[s.v.name] = s.finish()
        moved = {alias for alias, _ in self.plan.aliases}
        self.plan.removed_aliases = [a for a in self.plan.removed_aliases if a not in moved]
        return self.plan


def _weight_at(steps: Sequence[mv.RolloutStep], index: int) -> int:
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def plan(observed: Observed, config: Config, now: dt.datetime) -> Plan:
    """Everything to do for one model: objects, traffic, aliases, statuses, Events."""
    return _Planner(observed, config, now).run()
