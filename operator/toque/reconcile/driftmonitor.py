"""Decides what a DriftMonitor needs: its status, Events, CronJob and retraining. Pure.

Called by ``handlers.driftmonitor`` on every tick of the monitor's timer. ``due_in`` says
from the status alone whether a cycle is due (continuous: ``lastEvaluationTime +
interval``; sooner after a failure; at once when the spec changed). A due cycle calls
``plan`` again each time the plan asks for something only the handler can read:

1. given the live version (the model's Promoted ModelVersion), a continuous plan asks for
   an evaluation (``Plan.evaluate``: the handler reads the profile from MLflow and the
   window from Prometheus, and ``evaluation`` turns them into an ``Evaluation``); a
   scheduled plan returns its CronJob, and takes the newest finished check Job's result;
2. when the verdict calls for a retraining, it asks for this monitor's retraining
   TrainingJobs and the template to clone (``Plan.retrain``);
3. the final plan: one status merge patch, an Event on every flip, at most one
   TrainingJob.

The retraining guard is level-triggered: any retraining TrainingJob of this monitor that
has not finished (so also one created by a cycle that crashed before its status write)
blocks the next one, and the cooldown runs from the newest of them. A failed evaluation
(Prometheus or MLflow down, buckets that do not match) sets Ready=False and keeps the last
verdict: it never produces one of its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from toque.api import conditions as cond
from toque.api import driftmonitor as dm
from toque.api import schema
from toque.drift import types as dtypes
from toque.reconcile import driftqueries, driftresult, kubestatus, retrain
from toque.resources import drift_job, pods

# Look again this soon after a failed or empty cycle (never later than the interval).
RETRY_SECONDS = 30.0
# A scheduled monitor re-applies its CronJob and looks for finished checks this often (its
# Jobs' events make it look sooner).
SCHEDULED_SYNC_SECONDS = 60.0
FINISHED = ("Succeeded", "Failed")
MESSAGE_LIMIT = 1000
MAX_STATUS_FEATURES = 1024  # DriftMonitorStatus.features' maxItems
Result = driftresult.Result


@dataclasses.dataclass(frozen=True)
class Live:
    """The version the monitor watches: the model's Promoted ModelVersion."""

    name: str
    registry_version: str
    run_id: str | None
    trainingjob: str | None  # the TrainingJob that produced it, when one did


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why an evaluation gave no verdict; ``transient``: a dependency is down, retry."""

    reason: str
    message: str
    transient: bool = False


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One evaluation's outcome: a result, or the failure that kept it from one."""

    time: dt.datetime
    result: Result | None = None
    failure: Failure | None = None
    reference: str | None = None
    accuracy: float | None = None
    labeled_rows: int | None = None
    usage: tuple[dm.VersionUsage, ...] = ()
    bias: dm.BiasStatus | None = None
    job: str | None = None  # scheduled: the check Job it came from


@dataclasses.dataclass(frozen=True)
class RetrainJob:
    """A TrainingJob this monitor started (or the one its status names)."""

    name: str
    phase: str | None
    created: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class RetrainContext:
    """What a retraining decision needs: this monitor's retraining jobs and the template."""

    jobs: tuple[RetrainJob, ...] = ()
    template: dict[str, Any] | None = None
    template_problem: str | None = None


@dataclasses.dataclass(frozen=True)
class ScheduledRun:
    """The newest finished check Job of a scheduled monitor."""

    job: str
    finished: dt.datetime | None
    message: str | None  # the drift container's termination message
    exit_code: int | None = None
    problem: str | None = None  # e.g. its pod is gone


@dataclasses.dataclass(frozen=True)
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]  # as observed; read as ``dm.DriftMonitorStatus``
    live: Live | None = None
    live_problem: str | None = None  # why there is no live version
    evaluation: Evaluation | None = None
    retrain: RetrainContext | None = None
    scheduled: ScheduledRun | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    build: pods.BuildConfig = dataclasses.field(default_factory=pods.BuildConfig)
    prometheus_configured: bool = True
    mlflow_configured: bool = True


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class EvaluationRequest:
    """What the handler must read for a continuous evaluation."""

    target: driftqueries.Target
    run_id: str
    rules: dict[str, Any]  # ``dm.rules_document``
    bias: dm.BiasSpec | None
    min_samples: int


@dataclasses.dataclass(frozen=True)
class RetrainRequest:
    """What the handler must read before a retraining is decided."""

    template: str | None
    last_job: str | None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The operator's ``toque_drift_*`` gauges of one monitor after an evaluation."""

    namespace: str
    monitor: str
    model: str
    version: str
    features: tuple[dm.FeatureScore, ...]
    dataset_drifted: bool | None
    drift_share: float | None
    samples: int
    estimated_accuracy: float | None
    accuracy: float | None
    reference_accuracy: float | None
    output_drift_score: float | None
    bias: dm.BiasStatus | None
    performance_degraded: bool | None


@dataclasses.dataclass
class Plan:
    # The status merge patch (``kubestatus.dump``); empty while the plan is incomplete.
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    events: list[Event] = dataclasses.field(default_factory=list)
    evaluate: EvaluationRequest | None = None
    retrain: RetrainRequest | None = None
    create_trainingjob: dict[str, Any] | None = None
    cronjob: dict[str, Any] | None = None
    delete_cronjob: str | None = None
    # A dependency is down: write the status, then retry (kopf.TemporaryError).
    retry: Failure | None = None
    metrics: Snapshot | None = None

    @property
    def phase(self) -> str | None:
        value = self.status.get("phase")
        return value if isinstance(value, str) else None

    @property
    def incomplete(self) -> bool:
        """The plan waits for something only the handler can read."""
        return self.evaluate is not None or self.retrain is not None


# -- when ----------------------------------------------------------------------------------


def due_in(
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    generation: int,
    last_attempt: dt.datetime | None,
    now: dt.datetime,
) -> float:
    """Seconds until the next cycle (<= 0: now). ``last_attempt``: when this process last
    ran a cycle of the monitor (None after a restart)."""
    st = kubestatus.parse(dm.DriftMonitorStatus, status)
    if st.observed_generation != generation:
        return 0.0
    try:
        parsed = dm.DriftMonitorSpec.model_validate(dict(spec))
    except pydantic.ValidationError:
        return math.inf  # the status says why; only a new spec changes anything
    if parsed.mode == "scheduled":
        return _since(last_attempt, SCHEDULED_SYNC_SECONDS, now)
    interval = schema.duration_seconds(parsed.interval)
    ready = cond.find(st.conditions, dm.READY)
    last = kubestatus.utc(st.last_evaluation_time)
    if ready is not None and ready.status == "True" and last is not None:
        return (last - now).total_seconds() + interval
    return _since(last_attempt, min(interval, RETRY_SECONDS), now)


def _since(last: dt.datetime | None, seconds: float, now: dt.datetime) -> float:
    return 0.0 if last is None else (last - now).total_seconds() + seconds


# -- evaluations -----------------------------------------------------------------------------


def evaluation(
    request: EvaluationRequest,
    profile: dtypes.Profile,
    answers: driftqueries.Answers,
    now: dt.datetime,
) -> Evaluation:
    """The continuous evaluation from the live version's profile and Prometheus's answers
    (never raises: what cannot be judged becomes a failure with its reason)."""
    now = now.replace(microsecond=0)
    try:
        rules = dtypes.rules_from_dict(request.rules)
        report, current = driftqueries.check(profile, answers, rules)
    except driftqueries.Misaligned as error:
        message = (
            f"{error}: the serving pods count other buckets than the live version's training "
            "profile; they may still run an older model server"
        )
        return Evaluation(now, failure=Failure("ProfileMismatch", message))
    except dtypes.DriftError as error:
        return Evaluation(now, failure=Failure("InvalidRules", str(error)))
    accuracy, labeled = driftqueries.accuracy(answers)
    bias = None
    if request.bias is not None:
        enough = current.rows >= request.min_samples
        bias = driftqueries.bias(request.bias, profile, answers, enough)
    return Evaluation(
        time=now,
        result=driftresult.from_report(report),
        reference=profile.source or f"run:{request.run_id}",
        accuracy=accuracy,
        labeled_rows=labeled,
        usage=tuple(driftqueries.usage(answers)),
        bias=bias,
    )


def scheduled_evaluation(run: ScheduledRun, reference: str, now: dt.datetime) -> Evaluation:
    """The evaluation a finished check Job reports in its termination message."""
    time = (run.finished or now).replace(microsecond=0)
    if run.problem:
        failure = Failure("CheckFailed", f"Job {run.job}: {run.problem}")
        return Evaluation(time, failure=failure, job=run.job)
    try:
        result = driftresult.from_compact(run.message or "")
    except ValueError as error:
        tail = (run.message or "").strip()[-500:]
        code = f"exit code {run.exit_code}" if run.exit_code is not None else "no exit code"
        message = f"Job {run.job} gave no drift report ({code}; {error})"
        failure = Failure("CheckFailed", f"{message}: {tail}" if tail else message)
        return Evaluation(time, failure=failure, job=run.job)
    return Evaluation(time, result=result, reference=reference, job=run.job)


def performance_verdict(
    spec: dm.DriftMonitorSpec, r: Result, ev: Evaluation
) -> tuple[cond.ConditionStatus, str, str]:
    """(status, reason, message) of PerformanceDegraded: the accuracy measured on fed-back
    labels when at least minSamples came back, else the estimate; Unknown without either
    (never a false alarm)."""
    assert spec.performance is not None
    limit = spec.performance.max_drop
    reference = r.reference_accuracy
    if reference is None:
        return "Unknown", "NoReferenceAccuracy", "the reference profile has no accuracy"
    if ev.accuracy is not None and (ev.labeled_rows or 0) >= spec.min_samples:
        accuracy, how = ev.accuracy, f"measured on {ev.labeled_rows} labelled rows"
    elif r.estimated_accuracy is not None and r.samples >= spec.min_samples:
        accuracy, how = r.estimated_accuracy, "estimated from the predictions' confidence"
    else:
        return "Unknown", "InsufficientData", "too few rows or labels to judge the accuracy"
    drop = reference - accuracy
    gap = f"{drop:.3f} below" if drop > 0 else "not below"
    text = (
        f"accuracy {accuracy:.3f} ({how}) is {gap} the reference {reference:.3f} "
        f"(maxDrop {limit:g})"
    )
    if drop > limit:
        return "True", "AccuracyDropped", text
    return "False", "WithinLimit", text


# -- the plan --------------------------------------------------------------------------------


class _State:
    """Mutable view of the status while the plan is made; untouched fields survive."""

    def __init__(self, obs: Observed, now: dt.datetime) -> None:
        self.old = kubestatus.parse(dm.DriftMonitorStatus, obs.status)
        self.status = self.old.model_copy(deep=True)
        self.conditions = list(self.old.conditions)
        self.generation = obs.generation
        self.now = now

    def set(self, type_: str, status: cond.ConditionStatus, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.generation, self.now
        )

    def drop(self, type_: str) -> None:
        self.conditions = [c for c in self.conditions if c.type != type_]

    def was(self, type_: str) -> str | None:
        old = cond.find(self.old.conditions, type_)
        return old.status if old else None

    def finish(self, phase: dm.Phase, message: str) -> dict[str, Any]:
        self.status.phase = phase
        self.status.message = message[:MESSAGE_LIMIT]
        self.status.observed_generation = self.generation
        self.status.conditions = self.conditions
        return kubestatus.dump(self.status)


class _Planner:
    def __init__(self, obs: Observed, config: Config, now: dt.datetime) -> None:
        self.o = obs
        self.config = config
        self.now = now
        self.st = _State(obs, now)
        self.plan = Plan()

    def event(self, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message[:MESSAGE_LIMIT]))

    def flip(self, type_: str, raised: str, cleared: str) -> None:
        """An Event when a condition turns True (Warning) or leaves True (Normal)."""
        new = cond.find(self.st.conditions, type_)
        before = self.st.was(type_)
        if new is not None and new.status == "True" and before != "True":
            self.event("Warning", raised, new.message)
        elif new is not None and new.status == "False" and before == "True":
            self.event("Normal", cleared, new.message)

    def finish(self, phase: dm.Phase, message: str) -> Plan:
        self.plan.status = self.st.finish(phase, message)
        return self.plan

    # -- outcomes without a verdict ----------------------------------------------------------

    def fail(self, failure: Failure, phase: dm.Phase | None = None) -> Plan:
        """Ready=False with the reason; the last verdict stays as it was."""
        before = cond.find(self.st.old.conditions, dm.READY)
        self.st.set(dm.READY, "False", failure.reason, failure.message)
        if before is None or before.status != "False" or before.reason != failure.reason:
            self.event("Warning", "EvaluationFailed", failure.message)
        if failure.transient:
            self.plan.retry = failure
        return self.finish(phase or self.st.status.phase or "Pending", failure.message)

    def pending(self) -> Plan:
        self.st.status.live_version = None
        message = self.o.live_problem or "the model has no live version yet"
        return self.fail(Failure("NoLiveVersion", message), "Pending")

    def no_run(self, live: Live) -> Plan:
        message = f"{live.name} names no MLflow run, so its training profile cannot be read"
        return self.fail(Failure("NoTrainingProfile", message), "Failed")

    # -- verdicts --------------------------------------------------------------------------

    def record(self, spec: dm.DriftMonitorSpec, ev: Evaluation, live: Live) -> Plan:
        r = ev.result
        assert r is not None
        s = self.st.status
        insufficient = r.verdict == "InsufficientData"
        drifted = r.verdict == "Drifted"
        s.last_evaluation_time = ev.time
        s.reference = ev.reference or s.reference
        s.samples = r.samples
        s.total_features = r.total_features
        s.monitored_features = r.monitored_features
        s.features = status_features(r.features)
        s.drift_share = None if insufficient else r.drift_share
        s.drifted = None if insufficient else r.dataset_drifted
        s.drifted_features = [] if insufficient else list(r.drifted_features)
        s.output_drift = r.output
        s.multivariate = r.multivariate
        s.estimated_accuracy = r.estimated_accuracy
        s.reference_accuracy = r.reference_accuracy
        s.accuracy = driftresult.number(ev.accuracy)
        s.labeled_rows = ev.labeled_rows
        s.usage = list(ev.usage) or None
        s.bias = ev.bias if spec.bias else None
        if ev.job is not None:
            s.last_scheduled_job = ev.job
        self.st.set(dm.READY, "True", "Evaluated", f"{r.samples} rows of {live.name} evaluated")
        described = driftresult.describe(r)
        if insufficient:
            text = f"{r.samples} rows in the window, fewer than minSamples {spec.min_samples}"
            self.st.set(dm.DRIFTED, "Unknown", "InsufficientData", text)
            if self.st.old.phase != "InsufficientData":
                self.event("Normal", "InsufficientData", text)
        elif drifted:
            self.st.set(dm.DRIFTED, "True", "DriftDetected", described)
        else:
            self.st.set(dm.DRIFTED, "False", "NoDrift", described)
        self.flip(dm.DRIFTED, "DriftDetected", "DriftResolved")
        degraded, performance = self.performance(spec, r, ev)
        self.bias(spec, ev, insufficient)
        if insufficient:
            phase: dm.Phase = "InsufficientData"
            messages = [f"insufficient data: {r.samples} rows, minSamples {spec.min_samples}"]
        elif drifted or degraded:
            phase = "Drifted"
            messages = [described] if drifted else []
        else:
            phase = "Healthy"
            messages = [f"no drift: {described}"]
        if degraded:
            messages.append(performance)
        self.retrain(spec, ev, live, r, described if drifted else None, performance)
        if self.plan.retrain is not None:
            self.plan.events.clear()  # the next round, with the context, says it all again
            return self.plan
        if s.retrain_message:
            messages.append(s.retrain_message)
        self.plan.metrics = Snapshot(
            namespace=self.o.namespace,
            monitor=self.o.name,
            model=spec.model,
            version=live.registry_version,
            features=r.features,
            dataset_drifted=s.drifted,
            drift_share=s.drift_share,
            samples=r.samples,
            estimated_accuracy=s.estimated_accuracy,
            accuracy=s.accuracy,
            reference_accuracy=s.reference_accuracy,
            output_drift_score=r.output.score if r.output else None,
            bias=s.bias,
            performance_degraded=degraded if spec.performance else None,
        )
        return self.finish(phase, "; ".join(messages))

    def performance(self, spec: dm.DriftMonitorSpec, r: Result, ev: Evaluation) -> tuple[bool, str]:
        """(degraded, why), and the PerformanceDegraded condition when spec.performance."""
        if spec.performance is None:
            self.st.drop(dm.PERFORMANCE_DEGRADED)
            return False, ""
        status, reason, message = performance_verdict(spec, r, ev)
        self.st.set(dm.PERFORMANCE_DEGRADED, status, reason, message)
        self.flip(dm.PERFORMANCE_DEGRADED, "PerformanceDropped", "PerformanceRecovered")
        return status == "True", message

    def bias(self, spec: dm.DriftMonitorSpec, ev: Evaluation, insufficient: bool) -> None:
        if spec.bias is None:
            self.st.drop(dm.BIASED)
            return
        b = ev.bias
        if b is None or b.biased is None or insufficient:
            why = "no bias measurement" if b is None else "too few rows in at least two groups"
            self.st.set(dm.BIASED, "Unknown", "InsufficientData", why)
            return
        gaps = f"positive-rate gap {driftresult.fmt(b.disparity)}"
        if b.error_disparity is not None:
            gaps += f", error-rate gap {driftresult.fmt(b.error_disparity)}"
        text = f"{spec.bias.feature}: {gaps} (maxDisparity {spec.bias.max_disparity:g})"
        if b.biased:
            self.st.set(dm.BIASED, "True", "DisparityAboveLimit", text)
        else:
            self.st.set(dm.BIASED, "False", "WithinLimit", text)
        self.flip(dm.BIASED, "BiasDetected", "BiasResolved")

    # -- retraining ----------------------------------------------------------------------

    def retrain(
        self,
        spec: dm.DriftMonitorSpec,
        ev: Evaluation,
        live: Live,
        r: Result,
        drift: str | None,
        performance: str,
    ) -> None:
        s = self.st.status
        od = spec.on_drift
        reasons = []
        if od is not None and od.enabled and r.verdict != "InsufficientData":
            if drift:
                reasons.append(drift)
            degraded = cond.find(self.st.conditions, dm.PERFORMANCE_DEGRADED)
            if od.on_performance_drop and degraded is not None and degraded.status == "True":
                reasons.append(performance)
        if od is None or not reasons:
            s.retrain_message = None
            return
        template = retrain.template_name(spec, live.trainingjob)
        ctx = self.o.retrain
        if ctx is None:
            self.plan.retrain = RetrainRequest(template=template, last_job=s.last_retrain_job)
            return
        if self.in_flight(ctx, ev) or self.cooling(ctx, od):
            return
        problem, manifest = None, None
        if template is None:
            problem = (
                f"no TrainingJob to clone: {live.name} was not made by a TrainingJob; "
                "set onDrift.trainingJob"
            )
        elif ctx.template is None:
            problem = ctx.template_problem or f"TrainingJob {template} was not found"
        else:
            try:
                manifest = retrain.clone(
                    ctx.template,
                    self.o.name,
                    self.o.namespace,
                    ev.time,
                    od.data_tag,
                    "; ".join(reasons),
                )
            except retrain.CloneError as error:
                problem = str(error)
        if manifest is None:
            text = f"cannot retrain: {problem}"
            if s.retrain_message != text:
                self.event("Warning", "RetrainFailed", text)
            s.retrain_message = text
            return
        name = manifest["metadata"]["name"]
        self.plan.create_trainingjob = manifest
        s.last_retrain_job = name
        s.last_retrain_time = self.now
        s.retrains = (s.retrains or 0) + 1
        s.retrain_message = None
        self.event(
            "Normal",
            "RetrainTriggered",
            f"created TrainingJob {name} from {template} on data tag {od.data_tag}: "
            + "; ".join(reasons),
        )

    def in_flight(self, ctx: RetrainContext, ev: Evaluation) -> bool:
        """A retraining still runs (a deleted one is no longer listed: finished)."""
        s = self.st.status
        running = sorted(
            (j for j in ctx.jobs if j.phase not in FINISHED),
            key=lambda j: (j.created or ev.time, j.name),
        )
        if not running:
            return False
        newest = running[-1]
        if s.last_retrain_job != newest.name:
            # Created by a cycle that crashed before its status write: adopt it.
            s.last_retrain_job = newest.name
            s.last_retrain_time = newest.created or self.now
            s.retrains = (s.retrains or 0) + 1
        s.retrain_message = f"retraining {newest.name} still runs"
        return True

    def cooling(self, ctx: RetrainContext, od: dm.RetrainSpec) -> bool:
        s = self.st.status
        times = [kubestatus.utc(s.last_retrain_time), *(j.created for j in ctx.jobs)]
        last = max((t for t in times if t is not None), default=None)
        until = last + dt.timedelta(seconds=schema.duration_seconds(od.cooldown)) if last else None
        if until is None or self.now >= until:
            return False
        stamp = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        s.retrain_message = f"no retraining before {stamp} (cooldown {od.cooldown})"
        return True

    # -- modes ---------------------------------------------------------------------------

    def run(self) -> Plan:
        try:
            spec = dm.DriftMonitorSpec.model_validate(self.o.spec)
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            return self.fail(Failure("InvalidSpec", f"invalid spec: {problems}"), "Failed")
        if spec.mode == "scheduled":
            return self.scheduled(spec)
        return self.continuous(spec)

    def continuous(self, spec: dm.DriftMonitorSpec) -> Plan:
        if self.st.old.observed_generation != self.o.generation:
            # A monitor switched from scheduled mode leaves no CronJob behind.
            self.plan.delete_cronjob = drift_job.cronjob_name(self.o.name)
        live = self.o.live
        if live is None:
            return self.pending()
        self.st.status.live_version = live.name
        if not self.config.prometheus_configured:
            text = "the operator has no Prometheus URL (Helm value prometheus.url)"
            return self.fail(Failure("NoPrometheus", text))
        if not self.config.mlflow_configured:
            text = "the operator has no MLflow tracking URI (Helm value mlflow.trackingUri)"
            return self.fail(Failure("NoMLflow", text))
        if not live.run_id:
            return self.no_run(live)
        ev = self.o.evaluation
        if ev is None:
            self.plan.evaluate = EvaluationRequest(
                target=driftqueries.Target(
                    namespace=self.o.namespace,
                    model=spec.model,
                    version=live.registry_version,
                    window_seconds=int(schema.duration_seconds(spec.window)),
                    bias_feature=spec.bias.feature if spec.bias else None,
                ),
                run_id=live.run_id,
                rules=dm.rules_document(spec),
                bias=spec.bias,
                min_samples=spec.min_samples,
            )
            return self.plan
        if ev.failure is not None:
            return self.fail(ev.failure, None if ev.failure.transient else "Failed")
        return self.record(spec, ev, live)

    def scheduled(self, spec: dm.DriftMonitorSpec) -> Plan:
        live = self.o.live
        if live is None:
            return self.pending()
        s = self.st.status
        s.live_version = live.name
        target = drift_job.Live(spec.model, live.registry_version, live.run_id)
        reference = drift_job.reference(spec, target)
        if reference is None:
            return self.no_run(live)
        owner = drift_job.Owner(self.o.name, self.o.namespace, self.o.uid)
        self.plan.cronjob = drift_job.build(owner, spec, target, reference, self.config.build)
        run = self.o.scheduled
        if run is None or run.job == s.last_scheduled_job:
            if s.last_evaluation_time is None and s.phase in (None, "Pending"):
                text = f"waiting for the first scheduled check ({spec.schedule})"
                self.st.set(dm.READY, "Unknown", "WaitingForCheck", text)
                return self.finish("Pending", text)
            return self.finish(s.phase or "Pending", s.message or "")
        ev = self.o.evaluation or scheduled_evaluation(run, reference, self.now)
        if ev.failure is not None:
            s.last_scheduled_job = run.job
            return self.fail(ev.failure, "Failed")
        return self.record(spec, ev, live)


def status_features(features: Sequence[dm.FeatureScore]) -> list[dm.FeatureScore]:
    """The per-feature verdicts the status holds: all of them, or drifted ones first up to
    the schema's limit (a wide model must not make the status write fail)."""
    if len(features) <= MAX_STATUS_FEATURES:
        return list(features)
    return sorted(features, key=lambda f: not f.drifted)[:MAX_STATUS_FEATURES]


def plan(obs: Observed, config: Config, now: dt.datetime) -> Plan:
    """Everything to do for one DriftMonitor in this cycle (see the module docstring)."""
    return _Planner(obs, config, now.replace(microsecond=0)).run()


def rejected(plan_: Plan, observed_status: Mapping[str, Any], message: str) -> Plan:
    """The plan after the API server refused the retraining TrainingJob: the status keeps
    the previous retraining and says why, and a Warning replaces RetrainTriggered."""
    name = (plan_.create_trainingjob or {}).get("metadata", {}).get("name", "")
    text = f"the API server refused TrainingJob {name}: {message}"[:MESSAGE_LIMIT]
    status = dict(plan_.status)
    for key in ("lastRetrainJob", "lastRetrainTime", "retrains"):
        status[key] = observed_status.get(key)
    status["retrainMessage"] = text
    events = [e for e in plan_.events if e.reason != "RetrainTriggered"]
    events.append(Event("Warning", "RetrainFailed", text))
    return dataclasses.replace(plan_, status=status, events=events, create_trainingjob=None)


def live_version(model: str, versions: Sequence[Mapping[str, Any]]) -> tuple[Live | None, str]:
    """The model's live version among the namespace's ModelVersions (the Promoted one; the
    latest promotion wins), or why there is none."""
    promoted = []
    for body in versions:
        status = body.get("status") or {}
        registered = (status.get("registry") or {}).get("version")
        mine = (body.get("spec") or {}).get("model") == model
        going = (body.get("metadata") or {}).get("deletionTimestamp")
        if mine and status.get("phase") == "Promoted" and registered and not going:
            promoted.append(body)
    if not promoted:
        return None, f"no ModelVersion of model {model} is Promoted (live) yet"
    body = max(
        promoted,
        key=lambda b: (str((b.get("status") or {}).get("promotedAt") or ""), b["metadata"]["name"]),
    )
    meta, status = body["metadata"], body.get("status") or {}
    trainingjob = ((body.get("spec") or {}).get("source") or {}).get("trainingJob")
    for ref in meta.get("ownerReferences") or []:
        if not trainingjob and ref.get("kind") == "TrainingJob":
            trainingjob = ref.get("name")
    live = Live(
        name=str(meta["name"]),
        registry_version=str(status["registry"]["version"]),
        run_id=str(status.get("runId") or "") or None,
        trainingjob=str(trainingjob) if trainingjob else None,
    )
    return live, ""
