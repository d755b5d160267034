"""kopf handlers for DriftMonitor: a timer per monitor, and the events of its check Jobs.

The timer ticks every ``TOQUE_DRIFT_TICK`` seconds (default 10); ``reconcile.driftmonitor
.due_in`` decides from the status whether a cycle is due, so a tick that is not due costs
no API call. A due cycle observes the live version (the model's Promoted ModelVersion),
asks ``reconcile.driftmonitor.plan``, and reads what the plan asks for:

- continuous: the live run's reference profile (``toque/feature-bins.json`` through the
  MLflow tracking server, cached per run id) and the window's serving metrics from
  Prometheus, all queried at one evaluation time;
- scheduled: it applies the CronJob and reads the newest finished check Job's termination
  message (a Job finishing also starts a cycle at once);
- before a retraining: this monitor's retraining TrainingJobs and the template to clone.

Then it acts: the CronJob (server-side apply), at most one TrainingJob (created; one that
already exists, from a cycle that crashed before its status write, is taken as created),
one status write, the plan's Events, the ``toque_drift_*`` metrics. Prometheus or MLflow
unreachable ends the cycle with ``kopf.TemporaryError`` after the status says so.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import json
import os
import threading
from typing import Any

import kopf

from toque.api import constants
from toque.api import driftmonitor as dm
from toque.clients import kube, mlflow_artifacts, mlflow_registry, prometheus
from toque.core import bins
from toque.drift import profile as drift_profile
from toque.drift import types as dtypes
from toque.handlers import cycle, metrics, runtime
from toque.handlers.cycle import Logger
from toque.reconcile import analysis, driftqueries, kubestatus
from toque.reconcile import driftmonitor as decide
from toque.resources import drift_job, names

KIND = "DriftMonitor"
PLURAL = "driftmonitors"
TICK_SECONDS = float(os.environ.get("TOQUE_DRIFT_TICK", "10"))
RETRY_SECONDS = decide.RETRY_SECONDS
PROFILE_CACHE_SIZE = 64
# The plan asks for one more thing at a time: an evaluation, then the retraining context.
MAX_ROUNDS = 3

_guard = threading.Lock()
# When this process last ran a cycle of each monitor: a failed one is retried after
# RETRY_SECONDS, not on every tick.
_attempts: dict[tuple[str, str], dt.datetime] = {}
_profiles: collections.OrderedDict[str, dtypes.Profile] = collections.OrderedDict()


def config() -> decide.Config:
    build = runtime.build_config()
    return decide.Config(
        build=build,
        prometheus_configured=bool(_prometheus_url()),
        mlflow_configured=bool(build.mlflow_tracking_uri),
    )


def _prometheus_url() -> str:
    return os.environ.get("TOQUE_PROMETHEUS_URL") or ""


def _last_attempt(namespace: str, name: str) -> dt.datetime | None:
    with _guard:
        return _attempts.get((namespace, name))


def _attempted(namespace: str, name: str, now: dt.datetime | None) -> None:
    with _guard:
        if now is None:
            _attempts.pop((namespace, name), None)
        else:
            _attempts[(namespace, name)] = now


def _due(body: dict[str, Any], now: dt.datetime) -> bool:
    meta = body.get("metadata") or {}
    last = _last_attempt(str(meta.get("namespace")), str(meta.get("name")))
    generation = int(meta.get("generation") or 0)
    return (
        decide.due_in(body.get("spec") or {}, body.get("status") or {}, generation, last, now) <= 0
    )


def _cycle(namespace: str, name: str, force: bool, logger: Logger) -> decide.Plan | None:
    """One observe → decide → act cycle; None when none was due (or the monitor is gone)."""
    k = runtime.client()
    body = k.get(constants.API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    now = dt.datetime.now(dt.UTC)
    if not force and not _due(body, now):
        return None
    _attempted(namespace, name, now)
    observed = _observe(k, namespace, body)
    cfg = config()
    plan = decide.plan(observed, cfg, now)
    for _ in range(MAX_ROUNDS):
        if plan.evaluate is not None and observed.evaluation is None:
            observed = dataclasses.replace(observed, evaluation=_evaluate(plan.evaluate, now))
        elif plan.retrain is not None and observed.retrain is None:
            context = _retrain_context(k, namespace, name, plan.retrain)
            observed = dataclasses.replace(observed, retrain=context)
        else:
            break
        plan = decide.plan(observed, cfg, now)
    _act(k, namespace, name, body, observed, plan, now, logger)
    return plan


# -- observe -------------------------------------------------------------------------------


def _observe(k: kube.Kube, namespace: str, body: dict[str, Any]) -> decide.Observed:
    meta, spec = body["metadata"], body.get("spec") or {}
    name = str(meta["name"])
    versions = k.list_objects(constants.API_VERSION, "ModelVersion", namespace, "")
    live, problem = decide.live_version(str(spec.get("model") or ""), versions)
    scheduled = None
    if spec.get("mode") == "scheduled" and live is not None:
        last = (body.get("status") or {}).get("lastScheduledJob")
        scheduled = _scheduled_run(k, namespace, name, last)
    return decide.Observed(
        name=name,
        namespace=namespace,
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=body.get("status") or {},
        live=live,
        live_problem=problem or None,
        scheduled=scheduled,
    )


def _finished(job: dict[str, Any]) -> dt.datetime | None:
    """When a Job finished (Complete or Failed), or None while it runs."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            stamp = (job.get("status") or {}).get("completionTime") or c.get("lastTransitionTime")
            return kubestatus.parse_time(stamp) or dt.datetime.now(dt.UTC)
    return None


def _check_jobs(k: kube.Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = (
        f"{dm.LABEL_DRIFT_MONITOR}={names.label_value(name)},"
        f"{constants.LABEL_COMPONENT}={drift_job.COMPONENT}"
    )
    jobs = k.list_objects("batch/v1", "Job", namespace, selector)
    key = drift_job.MONITOR_ANNOTATION
    return [j for j in jobs if (j["metadata"].get("annotations") or {}).get(key) == name]


def _scheduled_run(
    k: kube.Kube, namespace: str, name: str, recorded: str | None
) -> decide.ScheduledRun | None:
    """The newest finished check Job; its pod's termination message unless recorded."""
    finished = [(t, j) for j in _check_jobs(k, namespace, name) if (t := _finished(j))]
    if not finished:
        return None
    when, job = max(finished, key=lambda item: (item[0], item[1]["metadata"]["name"]))
    job_name = str(job["metadata"]["name"])
    if job_name == recorded:
        return decide.ScheduledRun(job=job_name, finished=when, message=None)
    selector = f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"
    best: tuple[str, dict[str, Any]] | None = None
    for pod in k.list_objects("v1", "Pod", namespace, selector):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == drift_job.CONTAINER_NAME and term:
                stamp = str(term.get("finishedAt") or "")
                if best is None or stamp >= best[0]:
                    best = (stamp, term)
    if best is None:
        return decide.ScheduledRun(job_name, when, None, problem="its pod is gone")
    term = best[1]
    code = term.get("exitCode")
    return decide.ScheduledRun(
        job=job_name,
        finished=when,
        message=str(term.get("message") or ""),
        exit_code=int(code) if code is not None else None,
    )


def _profile(run_id: str) -> dtypes.Profile:
    """The run's reference profile, read once per run id (a run's artifacts never change)."""
    with _guard:
        cached = _profiles.get(run_id)
        if cached is not None:
            _profiles.move_to_end(run_id)
            return cached
    uri = runtime.build_config().mlflow_tracking_uri or ""
    raw = mlflow_artifacts.Artifacts(uri).read(run_id, bins.ARTIFACT_PATH)
    found = drift_profile.from_json(raw)
    with _guard:
        _profiles[run_id] = found
        while len(_profiles) > PROFILE_CACHE_SIZE:
            _profiles.popitem(last=False)
    return found


def _evaluate(request: decide.EvaluationRequest, now: dt.datetime) -> decide.Evaluation:
    """Read the profile and the window, and let the plan's side judge them."""
    run = request.run_id
    try:
        found = _profile(run)
    except mlflow_registry.RegistryUnavailableError as error:
        failure = decide.Failure("MLflowUnavailable", f"MLflow unreachable: {error}", True)
        return decide.Evaluation(now, failure=failure)
    except mlflow_registry.RegistryNotFoundError:
        text = f"run {run} has no {bins.ARTIFACT_PATH}: it was not trained by Toque's trainer"
        return decide.Evaluation(now, failure=decide.Failure("NoTrainingProfile", text))
    except mlflow_registry.RegistryError as error:
        text = f"MLflow refused {bins.ARTIFACT_PATH} of run {run}: {error}"
        return decide.Evaluation(now, failure=decide.Failure("NoTrainingProfile", text))
    except dtypes.DriftError as error:
        text = f"{bins.ARTIFACT_PATH} of run {run}: {error}"
        return decide.Evaluation(now, failure=decide.Failure("NoTrainingProfile", text))
    answers, refused = _query(request.target, now)
    if refused is not None:
        return decide.Evaluation(now, failure=refused)
    return decide.evaluation(request, found, answers, now)


def _query(
    target: driftqueries.Target, now: dt.datetime
) -> tuple[dict[str, list[analysis.Sample]], decide.Failure | None]:
    """Every query of the evaluation at one time, or why Prometheus could not answer."""
    client = prometheus.Prometheus(_prometheus_url())
    answers: dict[str, list[analysis.Sample]] = {}
    for key, query in driftqueries.queries(target).items():
        try:
            samples = client.query(query, time=now)
        except prometheus.PrometheusUnavailableError as error:
            text = f"Prometheus unreachable: {error}"
            return {}, decide.Failure("PrometheusUnavailable", text, True)
        except prometheus.PrometheusQueryError as error:
            return {}, decide.Failure("QueryFailed", f"Prometheus refused {key}: {error}")
        answers[key] = [analysis.Sample(dict(s.labels), float(s.value)) for s in samples]
    return answers, None


def _retrain_context(
    k: kube.Kube, namespace: str, name: str, request: decide.RetrainRequest
) -> decide.RetrainContext:
    selector = f"{dm.LABEL_DRIFT_MONITOR}={names.label_value(name)}"
    mine = f"DriftMonitor/{name}"
    bodies = [
        b
        for b in k.list_objects(constants.API_VERSION, "TrainingJob", namespace, selector)
        if (b["metadata"].get("annotations") or {}).get(dm.ANNOTATION_TRIGGERED_BY) == mine
    ]
    if request.last_job and request.last_job not in {b["metadata"]["name"] for b in bodies}:
        last = k.get(constants.API_VERSION, "TrainingJob", namespace, request.last_job)
        if last is not None:  # a deleted retraining counts as finished
            bodies.append(last)
    jobs = tuple(
        decide.RetrainJob(
            name=str(b["metadata"]["name"]),
            phase=(b.get("status") or {}).get("phase"),
            created=kubestatus.parse_time(b["metadata"].get("creationTimestamp")),
        )
        for b in bodies
    )
    template, problem = None, None
    if request.template:
        template = k.get(constants.API_VERSION, "TrainingJob", namespace, request.template)
        if template is None:
            problem = f"TrainingJob {request.template} to clone was not found"
    return decide.RetrainContext(jobs=jobs, template=template, template_problem=problem)


# -- act -----------------------------------------------------------------------------------


def _api_message(error: kube.ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def _create(
    k: kube.Kube, namespace: str, plan: decide.Plan, observed: decide.Observed
) -> decide.Plan:
    """Create the retraining TrainingJob; one already there is the one this plan names."""
    manifest = plan.create_trainingjob
    assert manifest is not None
    try:
        k.request(
            "POST", kube.resource_path(constants.API_VERSION, "TrainingJob", namespace), manifest
        )
    except kube.ApiException as error:
        if error.status != 409:  # AlreadyExists: a cycle that crashed created it
            if kube.is_transient(error):
                raise
            return decide.rejected(plan, observed.status, _api_message(error))
    metrics.RETRAINS.labels(namespace, observed.name).inc()
    return plan


def _act(
    k: kube.Kube,
    namespace: str,
    name: str,
    body: dict[str, Any],
    observed: decide.Observed,
    plan: decide.Plan,
    now: dt.datetime,
    logger: Logger,
) -> None:
    if plan.delete_cronjob:
        path = kube.resource_path("batch/v1", "CronJob", namespace, plan.delete_cronjob)
        try:
            k.request("DELETE", path, query=[("propagationPolicy", "Background")])
        except kube.ApiException as error:
            if not kube.is_not_found(error):
                raise
    if plan.cronjob:
        k.apply(plan.cronjob, force=True)
    if plan.create_trainingjob:
        plan = _create(k, namespace, plan, observed)
    if plan.status and kubestatus.changes(plan.status, body.get("status")):
        try:
            k.patch_status(constants.API_VERSION, KIND, namespace, name, plan.status)
        except kube.ApiException as error:
            if not kube.is_not_found(error):
                raise
    for event in plan.events:
        try:
            k.event(body, event.type, event.reason, event.message, now)
        except kube.ApiException as error:  # an Event is not worth failing the cycle
            logger.warning("could not post event %s: %s", event.reason, error.reason)
    if plan.phase:
        metrics.DRIFTMONITOR_PHASES.set(namespace, name, plan.phase)
    if plan.metrics is not None:
        metrics.DRIFT.set(plan.metrics)
    if plan.retry is not None:
        raise kopf.TemporaryError(plan.retry.message, delay=RETRY_SECONDS)


# -- kopf ------------------------------------------------------------------------------------


def _target(namespace: str, name: str) -> cycle.Target:
    # Its own lock key: a TrainingJob may have the monitor's name.
    return cycle.Target(KIND, namespace, f"driftmonitor:{name}")


def _tick(namespace: str, name: str, force: bool, logger: Logger) -> cycle.LookAgain | None:
    _cycle(namespace, name, force, logger)
    return None


@kopf.timer(constants.GROUP, constants.VERSION, PLURAL, interval=TICK_SECONDS, sharp=False)
def drift_timer(**kwargs: Any) -> None:
    namespace, name, logger = kwargs["namespace"], kwargs["name"], kwargs["logger"]
    raw = {
        "metadata": dict(kwargs["meta"]),
        "spec": dict(kwargs["spec"]),
        "status": dict(kwargs["status"]),
    }
    if not _due(raw, dt.datetime.now(dt.UTC)):
        return  # the common tick: nothing due, no API call
    cycle.retrying(
        _target(namespace, name), functools.partial(_tick, namespace, name, False, logger)
    )


@kopf.on.event("batch", "v1", "jobs", labels={dm.LABEL_DRIFT_MONITOR: kopf.PRESENT})
def on_check_job(**kwargs: Any) -> None:
    """A scheduled check finished: record its result now rather than at the next sync."""
    body = kwargs["body"]
    monitor = (body.get("metadata", {}).get("annotations") or {}).get(drift_job.MONITOR_ANNOTATION)
    if not monitor or kwargs["type"] == "DELETED" or _finished(dict(body)) is None:
        return
    namespace, logger = kwargs["namespace"], kwargs["logger"]
    cycle.best_effort(
        _target(namespace, monitor),
        functools.partial(_cycle, namespace, monitor, True, logger),
        logger,
    )


@kopf.on.delete(constants.GROUP, constants.VERSION, PLURAL, optional=True)
def on_driftmonitor_deleted(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    metrics.DRIFTMONITOR_PHASES.set(namespace, name, None)
    metrics.DRIFT.forget(namespace, name)
    _attempted(namespace, name, None)
    runtime.forget_lock(namespace, f"driftmonitor:{name}")
