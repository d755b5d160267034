"""Decides what a TrainingJob needs: its Job, its status, its Events. Pure: no I/O.

Called by ``handlers.trainingjob`` with everything observed in one cycle. The status is
derived from the Job and its pods every time (level-triggered), so a restart or a repeated
event gives the same answer; conditions keep their transition times unless they flip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pydantic

from toque.api import conditions as cond
from toque.api import schema, trainresult
from toque.api import trainingjob as tj
from toque.api import validators as v
from toque.reconcile import gate, kubestatus
from toque.resources import modelversion as mvs
from toque.resources import names, pods
from toque.resources import trainingjob_job as jobs

TERMINAL = ("Succeeded", "Failed")
MESSAGE_TAIL = 2000

# Condition types, as documented in the CRD description.
JOB_CREATED = "JobCreated"
SPEC_APPLIED = "SpecApplied"
POD_CREATED = "PodCreated"
POD_SCHEDULED = "PodScheduled"
RUNNING = "Running"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
DEPENDENCIES = "DependenciesReady"
GATE_PASSED = "GatePassed"
MODEL_VERSION = "ModelVersionCreated"

# Container "waiting" reasons that mean the pod cannot start without a fix.
_STUCK_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


@dataclasses.dataclass(frozen=True)
class Observed:
    """One cycle's view of a TrainingJob and its children."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]  # as observed; read as ``tj.TrainingJobStatus``
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    # Warning Events the Job controller posted on the Job (FailedCreate: quota, admission...),
    # newest last; only fetched while the Job has no pod.
    job_warnings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The model holding the champion alias, when the gate needs it: None means not looked up
    # (yet); champion_error says why the registry could not be read.
    champion: tj.Champion | None = None
    champion_error: str | None = None


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the TrainingJob."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass
class Plan:
    """What the handler must do: at most one apply, one update, one status write."""

    create_job: dict[str, Any] | None = None
    update_job: dict[str, Any] | None = None
    apply_model_version: dict[str, Any] | None = None
    # Seconds after which the handler should look again (the registry was unreachable).
    retry_after: float | None = None
    # The status merge patch (``kubestatus.dump`` of ``tj.TrainingJobStatus``).
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    events: list[Event] = dataclasses.field(default_factory=list)

    @property
    def phase(self) -> str | None:
        value = self.status.get("phase")
        return value if isinstance(value, str) else None


def unsettled(plan: Plan) -> bool:
    """Whether the handler must look again: the run is not finished, or its gate still
    waits for the registry (no watch event says when either changes)."""
    return plan.phase not in ("Succeeded", "Failed", "Suspended") or bool(plan.retry_after)


class _Status:
    """Mutable builder over the previous status, so untouched fields survive."""

    def __init__(self, old: tj.TrainingJobStatus, generation: int, now: dt.datetime) -> None:
        self.status = old.model_copy(deep=True)
        self.now = now
        self.generation = generation
        self.conditions = list(old.conditions)

    def set(self, type_: str, status: cond.ConditionStatus, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.generation, self.now
        )

    def get(self, type_: str) -> cond.Condition | None:
        return cond.find(self.conditions, type_)

    def finish(self, phase: tj.Phase, message: str) -> dict[str, Any]:
        self.status.phase = phase
        self.status.message = message
        self.status.observed_generation = self.generation
        self.status.conditions = self.conditions
        return kubestatus.dump(self.status)


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return dict(c)
    return None


def _owned_by(job: dict[str, Any], uid: str) -> bool:
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def _tail(text: str, limit: int = MESSAGE_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _last_termination(pods: list[dict[str, Any]]) -> str | None:
    """'exit code N (Reason): message' of the most recently finished trainer container."""
    best: tuple[str, str] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != jobs.CONTAINER_NAME:
                continue
            term = (cs.get("state") or {}).get("terminated")
            if not term or term.get("exitCode", 0) == 0:
                continue
            text = f"exit code {term.get('exitCode')}"
            if term.get("reason"):
                text += f" ({term['reason']})"
            if term.get("message"):
                text += ": " + _tail(str(term["message"]))
            finished = str(term.get("finishedAt") or "")
            if best is None or finished >= best[0]:
                best = (finished, text)
    return best[1] if best else None


def _pending_reason(pods: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(condition type, reason, message) explaining why no pod runs yet, if any pod says."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return POD_SCHEDULED, c.get("reason") or "Unschedulable", c.get("message") or ""
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _STUCK_WAITING:
                return RUNNING, str(waiting["reason"]), str(waiting.get("message") or "")
    return None


def _pods_scheduled(pods: list[dict[str, Any]]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "True"
        for p in pods
        for c in (p.get("status") or {}).get("conditions") or []
    )


def _phase_events(old_phase: str | None, new_phase: str, message: str) -> list[Event]:
    if old_phase == new_phase:
        return []
    kind = "Warning" if new_phase == "Failed" else "Normal"
    return [Event(kind, new_phase, message or f"TrainingJob is {new_phase}")]


def _invalid(old: tj.TrainingJobStatus, st: _Status, error: pydantic.ValidationError) -> Plan:
    problems = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
    )
    message = f"invalid spec: {problems}"
    st.set(FAILED, "True", "InvalidSpec", message)
    status = st.finish("Failed", message)
    events = _phase_events(old.phase, "Failed", message)
    return Plan(status=status, events=events)


def plan(obs: Observed, config: pods.BuildConfig, now: dt.datetime) -> Plan:
    """Everything the handler must do for this TrainingJob in this cycle."""
    now = now.replace(microsecond=0)
    old = kubestatus.parse(tj.TrainingJobStatus, obs.status)
    st = _Status(old, obs.generation, now)
    old_phase = old.phase
    try:
        spec = tj.TrainingJobSpec.model_validate(obs.spec)
    except pydantic.ValidationError as error:
        return _invalid(old, st, error)

    owner = jobs.Owner(obs.name, obs.namespace, obs.uid)
    desired = jobs.build_job(owner, spec, config)
    name = desired["metadata"]["name"]
    st.status.job_name = name
    out = Plan()

    if obs.job is None:
        if old_phase == "Succeeded" or old_phase == "Failed":
            # Its Job was removed after finishing (ttlSecondsAfterFinished or by hand): the
            # run is over, and re-running it would be a surprise.
            return Plan(status=st.finish(old_phase, old.message or ""))
        out.create_job = desired
        st.set(JOB_CREATED, "True", "Created", f"Job {name} created")
        st.set(SPEC_APPLIED, "True", "Applied", "the Job matches the spec")
        if cond.find(old.conditions, JOB_CREATED) is None:
            out.events.append(Event("Normal", "JobCreated", f"created Job {name}"))
        phase: tj.Phase = "Suspended" if spec.suspend else "Pending"
        if spec.suspend:
            st.set(SUSPENDED, "True", "Suspended", "spec.suspend is true")
        message = "waiting for the Job's pod" if not spec.suspend else "suspended"
        out.status = st.finish(phase, message)
        out.events += _phase_events(old_phase, phase, message)
        return out

    job = obs.job
    if not _owned_by(job, obs.uid):
        message = f"a Job named {name} exists and is not owned by this TrainingJob"
        st.set(JOB_CREATED, "False", "NameConflict", message)
        out.status = st.finish("Pending", message)
        previous = cond.find(old.conditions, JOB_CREATED)
        if previous is None or previous.reason != "NameConflict":
            out.events.append(Event("Warning", "NameConflict", message))
        return out

    st.set(JOB_CREATED, "True", "Created", f"Job {name} created")
    job_spec = job.get("spec") or {}
    job_status = job.get("status") or {}
    finished_job = _job_condition(job, "Complete") or _job_condition(job, "Failed")
    live_hash = ((job.get("metadata") or {}).get("annotations") or {}).get(
        jobs.TEMPLATE_HASH_ANNOTATION
    )
    if live_hash == desired["metadata"]["annotations"][jobs.TEMPLATE_HASH_ANNOTATION]:
        st.set(SPEC_APPLIED, "True", "Applied", "the Job matches the spec")
    else:
        st.set(
            SPEC_APPLIED,
            "False",
            "ImmutableAfterStart",
            "the pod template of a started run cannot change; only suspend, "
            "activeDeadlineSeconds and ttlSecondsAfterFinished are applied. Delete and "
            "re-create the TrainingJob to run with the new spec",
        )
    wanted = jobs.mutable_fields(spec)
    if not finished_job and any(job_spec.get(k) != v for k, v in wanted.items()):
        out.update_job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": obs.namespace},
            "spec": wanted,
        }

    if job_status.get("startTime"):
        st.status.start_time = kubestatus.parse_time(job_status["startTime"])
    if job_status.get("completionTime"):
        st.status.completion_time = kubestatus.parse_time(job_status["completionTime"])
    # The Job's counters lag its SuccessCriteriaMet/FailureTarget conditions (pods are
    # counted once their finalizers are processed); the pods themselves are there already.
    counted = sum(int(job_status.get(k) or 0) for k in ("active", "failed", "succeeded"))
    counted += sum(len(v) for v in (job_status.get("uncountedTerminatedPods") or {}).values())
    st.status.attempts = max(counted, len(obs.pods))

    phase, message = _derive_phase(job, obs.pods, obs.job_warnings, spec, st)
    _transient_failures(obs.pods, phase, st)
    if phase == "Succeeded":
        _record_result(obs.pods, st)
        _gate_and_promote(obs, spec, st, out)
    out.status = st.finish(phase, message)
    out.events = _phase_events(old_phase, phase, message) + out.events
    return out


def needs_champion(obs: Observed) -> bool:
    """Whether the handler must read the registry before deciding (a pure look at specs)."""
    rule = (obs.spec.get("evaluation") or {}).get("mustBeatChampion")
    return bool(rule) and not kubestatus.parse(tj.TrainingJobStatus, obs.status).gate


@dataclasses.dataclass(frozen=True)
class ChampionQuery:
    """Which registry alias the gate compares with, or why it cannot be asked."""

    registered_model: str | None
    alias: str
    problem: str | None = None


def champion_query(obs: Observed) -> ChampionQuery:
    """The registered model and alias of ``mustBeatChampion`` (called when ``needs_champion``)."""
    try:
        spec = tj.TrainingJobSpec.model_validate(obs.spec)
    except pydantic.ValidationError:
        return ChampionQuery(None, "champion", "invalid spec")
    rule = spec.evaluation.must_beat_champion if spec.evaluation else None
    alias = rule.alias if rule else "champion"
    if spec.model is None:
        return ChampionQuery(None, alias, "spec.model.name is unset")
    return ChampionQuery(names.registry_name(obs.namespace, spec.model.name), alias)


def _succeeded_message(pods: list[dict[str, Any]]) -> str | None:
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") == jobs.CONTAINER_NAME and term.get("exitCode") == 0:
                return str(term.get("message") or "")
    return None


def pinned_image(image_id: object) -> str | None:
    """``<repository>@sha256:…`` from a container status's ``imageID``, or None.

    containerd reports the repository digest the image was pulled by
    (``ghcr.io/acme/train@sha256:…``), Docker prefixes it with ``docker-pullable://``; a
    bare ``sha256:…`` is a local image ID, which no registry can serve, so it pins nothing.
    """
    text = str(image_id or "").split("://", 1)[-1]
    _, at, digest = text.rpartition("@")
    if at and schema.matches(v.DIGEST_PATTERN, digest) and schema.matches(v.IMAGE_PATTERN, text):
        return text
    return None


def _image_digest(pods: list[dict[str, Any]]) -> str | None:
    """The pinned image of the trainer container that finished the run."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if cs.get("name") == jobs.CONTAINER_NAME and term.get("exitCode") == 0:
                return pinned_image(cs.get("imageID"))
    return None


def _record_result(pods: list[dict[str, Any]], st: _Status) -> None:
    """Copy the trainer's result (termination message) and its image into status, once."""
    image = _image_digest(pods)
    if image and st.status.image_digest is None:
        st.status.image_digest = image
    if st.status.mlflow_run_id:
        return
    message = _succeeded_message(pods)
    result = trainresult.decode(message) if message else None
    if result is None:
        return
    st.status.mlflow_run_id = result.run_id
    if result.model_uri:
        st.status.model_uri = result.model_uri
    if result.model_digest:
        st.status.model_digest = result.model_digest
    st.status.metrics = dict(sorted(result.metrics.items()))
    st.status.datasets = [tj.DatasetDigest(ref=d.ref, digest=d.digest) for d in result.datasets]
    if result.code_revision:
        st.status.code_revision = result.code_revision


def _transient_failures(pods: list[dict[str, Any]], phase: str, st: _Status) -> None:
    """DependenciesReady=False while pods exit because MinIO or MLflow is unreachable."""
    latest: tuple[str, str] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("exitCode") == jobs.TRANSIENT_FAILURE_EXIT_CODE:
                stamp = str(term.get("finishedAt") or "")
                if latest is None or stamp >= latest[0]:
                    latest = (stamp, str(term.get("message") or "a dependency is unreachable"))
    if phase == "Succeeded" and st.get(DEPENDENCIES):
        st.set(DEPENDENCIES, "True", "Reachable", "MinIO and MLflow answered")
    elif latest and phase != "Succeeded":
        st.set(
            DEPENDENCIES,
            "False",
            "DependencyUnavailable",
            f"{_tail(latest[1], 1000)}; the pod is replaced and retried",
        )


def _gate_and_promote(obs: Observed, spec: tj.TrainingJobSpec, st: _Status, out: Plan) -> None:
    if not st.status.mlflow_run_id:
        return
    if not st.status.gate:
        if spec.evaluation and spec.evaluation.must_beat_champion and obs.champion is None:
            st.set(
                GATE_PASSED,
                "Unknown",
                "RegistryUnavailable",
                f"cannot read the champion from MLflow: {obs.champion_error or 'not read'}",
            )
            out.retry_after = 10.0
            return
        result = gate.evaluate(spec.evaluation, st.status.metrics or {}, obs.champion)
        st.status.gate = result
        failed = [r for r in result.results if not r.passed]
        if failed:
            text = "; ".join(f"{r.rule}: {r.message}" for r in failed)
            st.set(GATE_PASSED, "False", "GateFailed", text)
            out.events.append(Event("Warning", "GateFailed", text))
        else:
            st.set(
                GATE_PASSED,
                "True",
                "GatePassed",
                f"{len(result.results)} rule(s) passed" if result.results else "no rules",
            )
            out.events.append(Event("Normal", "GatePassed", "evaluation gate passed"))
    if not (st.status.gate and st.status.gate.passed):
        return
    owner = jobs.Owner(obs.name, obs.namespace, obs.uid)
    manifest = mvs.build(owner, spec, st.status.mlflow_run_id)
    if manifest is None:
        return
    name = manifest["metadata"]["name"]
    if st.status.model_version != name:
        out.apply_model_version = manifest
        st.status.model_version = name
        st.set(MODEL_VERSION, "True", "Created", f"ModelVersion {name} created")
        out.events.append(Event("Normal", "ModelVersionCreated", f"created ModelVersion {name}"))


def _derive_phase(
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    warnings: list[dict[str, Any]],
    spec: tj.TrainingJobSpec,
    st: _Status,
) -> tuple[tj.Phase, str]:
    """Phase and message from the Job's conditions and its pods; sets conditions on ``st``."""
    job_status = job.get("status") or {}
    if pods:
        st.set(POD_CREATED, "True", "Created", "the Job created the training pod")
    complete = _job_condition(job, "Complete") or _job_condition(job, "SuccessCriteriaMet")
    failed = _job_condition(job, "Failed") or _job_condition(job, "FailureTarget")
    if complete:
        st.set(SUCCEEDED, "True", "Completed", "the training pod finished successfully")
        st.set(RUNNING, "False", "Completed", "the run finished")
        if st.status.completion_time is None:
            st.status.completion_time = kubestatus.parse_time(complete.get("lastTransitionTime"))
        return "Succeeded", "training finished"
    if failed:
        reason = str(failed.get("reason") or "JobFailed")
        detail = _last_termination(pods)
        message = str(failed.get("message") or "the Job failed")
        if detail:
            message = f"{message}; last attempt: {detail}"
        st.set(FAILED, "True", reason, message)
        st.set(RUNNING, "False", reason, "the run stopped")
        if st.status.completion_time is None:
            st.status.completion_time = kubestatus.parse_time(failed.get("lastTransitionTime"))
        return "Failed", message
    if spec.suspend or _job_condition(job, "Suspended"):
        st.set(SUSPENDED, "True", "Suspended", "spec.suspend is true")
        st.set(RUNNING, "False", "Suspended", "the run is suspended")
        return "Suspended", "suspended"
    if st.get(SUSPENDED):
        st.set(SUSPENDED, "False", "Resumed", "spec.suspend is false")
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running or int(job_status.get("ready") or 0) > 0:
        st.set(POD_SCHEDULED, "True", "Scheduled", "the training pod is on a node")
        st.set(
            RUNNING,
            "True",
            "PodRunning",
            f"pod {running[0]['metadata']['name']} runs" if running else "the training pod runs",
        )
        return "Running", "training"
    if not pods:
        failed_create = [w for w in warnings if w.get("reason") == "FailedCreate"]
        if failed_create:
            message = str(failed_create[-1].get("message") or "")
            st.set(POD_CREATED, "False", "FailedCreate", message)
            return "Pending", f"the Job cannot create its pod: {message}"
    pending = _pending_reason(pods)
    if pending:
        type_, reason, message = pending
        st.set(type_, "False", reason, message)
        return "Pending", f"{reason}: {message}"
    if _pods_scheduled(pods):
        st.set(POD_SCHEDULED, "True", "Scheduled", "the training pod is on a node")
    return "Pending", "waiting for the training pod to start"


def rejected(obs: Observed, planned: Plan, message: str, now: dt.datetime) -> Plan:
    """The plan after the API server refused to create or update the Job."""
    old = kubestatus.parse(tj.TrainingJobStatus, planned.status)
    st = _Status(old, obs.generation, now.replace(microsecond=0))
    text = f"the API server refused the Job: {message}"
    st.set(JOB_CREATED if planned.create_job else SPEC_APPLIED, "False", "JobRejected", text)
    phase: tj.Phase = "Pending" if planned.create_job else (old.phase or "Pending")
    status = st.finish(phase, text)
    return Plan(status=status, events=[Event("Warning", "JobRejected", text)])
