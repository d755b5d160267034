"""Prometheus metrics of the operator (prefix ``toque_``), served by ``settings.startup``.

``DRIFT`` holds each DriftMonitor's last evaluation (``toque_drift_*``); the DriftMonitor
handler replaces a monitor's series as a whole after every evaluation, so a feature or a
version that went away leaves no stale series behind.

The block at the end feeds the chart's alerts: ``toque_trainingjob_failures_total``,
``toque_modelversion_rollbacks_total`` and ``toque_modelversion_step_started_timestamp_seconds``
(a canary stuck at a step).

The block after it feeds the Grafana dashboards: training run and GPU time, the reconcile
queue (``toque_reconcile_in_flight``, ``toque_reconcile_queue_depth``) and the leader election
(``leadership``, for whoever runs it).
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Iterator, Mapping

import prometheus_client
from prometheus_client import core, registry

from toque.api import driftmonitor as dm
from toque.api import modelversion as mv
from toque.api import trainingjob as tj
from toque.reconcile import driftmonitor as drift
from toque.reconcile import kubestatus

RECONCILES = prometheus_client.Counter(
    "toque_reconcile_total", "Reconcile cycles by kind and result.", ["kind", "result"]
)
ERRORS = prometheus_client.Counter(
    "toque_reconcile_errors_total",
    "Failed reconcile cycles by kind and error class.",
    ["kind", "error"],
)
DURATION = prometheus_client.Histogram(
    "toque_reconcile_duration_seconds",
    "Duration of one reconcile cycle.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class _PhaseCollector(registry.Collector):
    """``toque_<kind>s{namespace,phase}`` from the last phase seen of each object."""

    def __init__(self, metric: str, help_: str, phases: tuple[str, ...]) -> None:
        self._metric = metric
        self._help = help_
        self._phase_names = phases
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}

    def set(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            out: dict[tuple[str, str], int] = {}
            for (namespace, _), phase in self._phases.items():
                out[(namespace, phase)] = out.get((namespace, phase), 0) + 1
            return out

    def collect(self) -> Iterator[core.Metric]:
        family = core.GaugeMetricFamily(self._metric, self._help, labels=["namespace", "phase"])
        counts = self.counts()
        namespaces = {ns for ns, _ in counts} or set()
        for ns in sorted(namespaces):
            for phase in self._phase_names:
                family.add_metric([ns, phase], counts.get((ns, phase), 0))
        yield family


TRAININGJOB_PHASES = _PhaseCollector(
    "toque_trainingjobs", "TrainingJobs by namespace and phase.", tj.PHASES
)
prometheus_client.REGISTRY.register(TRAININGJOB_PHASES)
MODELVERSION_PHASES = _PhaseCollector(
    "toque_modelversions", "ModelVersions by namespace and phase.", typing.get_args(mv.Phase)
)
prometheus_client.REGISTRY.register(MODELVERSION_PHASES)
DRIFTMONITOR_PHASES = _PhaseCollector(
    "toque_driftmonitors", "DriftMonitors by namespace and phase.", typing.get_args(dm.Phase)
)
prometheus_client.REGISTRY.register(DRIFTMONITOR_PHASES)
RETRAINS = prometheus_client.Counter(
    "toque_drift_retrains_total",
    "Retraining TrainingJobs a DriftMonitor started.",
    ["namespace", "monitor"],
)

_MONITOR = ["namespace", "monitor", "model", "version"]
_FEATURE = [*_MONITOR, "feature", "method"]


def gauge(name: str, help_: str, labels: list[str]) -> core.GaugeMetricFamily:
    return core.GaugeMetricFamily(name, help_, labels=labels)


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


class _DriftCollector(registry.Collector):
    """``toque_drift_*`` gauges from the last evaluation of every DriftMonitor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[tuple[str, str], drift.Snapshot] = {}

    def set(self, snapshot: drift.Snapshot) -> None:
        # The monitor's retraining counter exists at 0 from its first evaluation on, so
        # increase() on a dashboard sees its first retraining too.
        RETRAINS.labels(snapshot.namespace, snapshot.monitor)
        with self._lock:
            self._snapshots[(snapshot.namespace, snapshot.monitor)] = snapshot

    def forget(self, namespace: str, monitor: str) -> None:
        with self._lock:
            self._snapshots.pop((namespace, monitor), None)

    def collect(self) -> Iterator[core.Metric]:
        with self._lock:
            snapshots = [self._snapshots[k] for k in sorted(self._snapshots)]
        score = gauge(
            "toque_drift_feature_score",
            "Drift score of a feature (the test statistic; ks, chi2 and ztest judge its "
            "p-value, toque_drift_feature_p_value).",
            _FEATURE,
        )
        p_value = gauge("toque_drift_feature_p_value", "P-value of a feature's test.", _FEATURE)
        threshold = gauge(
            "toque_drift_feature_threshold",
            "Threshold of a feature (a p-value for ks, chi2 and ztest).",
            _FEATURE,
        )
        drifted = gauge("toque_drift_feature_drifted", "1 when the feature drifted.", _FEATURE)
        per_monitor = {
            "dataset_drifted": gauge(
                "toque_drift_dataset_drifted", "1 when the dataset drifted.", _MONITOR
            ),
            "drift_share": gauge(
                "toque_drift_drift_share",
                "Share of the monitored features that drifted.",
                _MONITOR,
            ),
            "samples": gauge("toque_drift_samples", "Rows of the last evaluation.", _MONITOR),
            "estimated_accuracy": gauge(
                "toque_drift_estimated_accuracy",
                "Accuracy estimated from the predictions' confidence (CBPE-style).",
                _MONITOR,
            ),
            "accuracy": gauge(
                "toque_drift_accuracy",
                "Accuracy on the fed-back labels of the window.",
                _MONITOR,
            ),
            "reference_accuracy": gauge(
                "toque_drift_reference_accuracy", "Accuracy on the reference data.", _MONITOR
            ),
            "output_drift_score": gauge(
                "toque_drift_output_drift_score", "Drift score of the predictions.", _MONITOR
            ),
            "performance_degraded": gauge(
                "toque_drift_performance_degraded",
                "1 when the accuracy fell more than spec.performance.maxDrop.",
                _MONITOR,
            ),
        }
        rate = gauge(
            "toque_drift_group_positive_rate",
            "Share of a group's rows predicted as the positive class.",
            [*_MONITOR, "feature", "group"],
        )
        disparity = gauge(
            "toque_drift_bias_disparity",
            "Largest gap of positive rates between two groups.",
            [*_MONITOR, "feature"],
        )
        biased = gauge(
            "toque_drift_biased",
            "1 when a rate gap exceeds maxDisparity.",
            [*_MONITOR, "feature"],
        )
        for snap in snapshots:
            base = [snap.namespace, snap.monitor, snap.model, snap.version]
            for f in snap.features:
                labels = [*base, f.name, f.method or ""]
                for family, value in (
                    (score, f.score),
                    (p_value, f.p_value),
                    (threshold, f.threshold),
                    (drifted, _flag(f.drifted)),
                ):
                    if value is not None:
                        family.add_metric(labels, value)
            values = {
                "dataset_drifted": _flag(snap.dataset_drifted),
                "drift_share": snap.drift_share,
                "samples": float(snap.samples),
                "estimated_accuracy": snap.estimated_accuracy,
                "accuracy": snap.accuracy,
                "reference_accuracy": snap.reference_accuracy,
                "output_drift_score": snap.output_drift_score,
                "performance_degraded": _flag(snap.performance_degraded),
            }
            for key, value in values.items():
                if value is not None:
                    per_monitor[key].add_metric(base, value)
            if snap.bias is not None:
                for g in snap.bias.groups or []:
                    if g.positive_rate is not None:
                        rate.add_metric([*base, snap.bias.feature, g.group], g.positive_rate)
                if snap.bias.disparity is not None:
                    disparity.add_metric([*base, snap.bias.feature], snap.bias.disparity)
                if snap.bias.biased is not None:
                    biased.add_metric([*base, snap.bias.feature], float(snap.bias.biased))
        yield from (score, p_value, threshold, drifted, *per_monitor.values())
        yield from (rate, disparity, biased)


DRIFT = _DriftCollector()
prometheus_client.REGISTRY.register(DRIFT)


# -- for the chart's alerts (helm/toque/templates/prometheusrule.yaml) ------------------------
# Transitions are counted where the status that records them is written, from the observed
# status and the written one, so a restarted operator that resumes a Failed object counts
# nothing. The counters' series are created at 0 as soon as a namespace (or model) is seen:
# increase() in an alert cannot see the first increment of a series that starts at 1.

TRAINING_FAILURES = prometheus_client.Counter(
    "toque_trainingjob_failures_total",
    "TrainingJobs that entered the Failed phase.",
    ["namespace"],
)
ROLLBACKS = prometheus_client.Counter(
    "toque_modelversion_rollbacks_total",
    "Rollouts that ended without a promotion, the traffic staying on (or going back to) the "
    "stable version: RolledBack (analysis failed, or by hand), Aborted (by hand), Failed.",
    ["namespace", "model", "phase"],
)
ROLLBACK_PHASES = ("RolledBack", "Aborted", "Failed")
STEP_PHASES = ("Progressing", "Paused")


def _phase(status: Mapping[str, typing.Any] | None) -> object:
    return (status or {}).get("phase")


def trainingjob_written(
    namespace: str,
    old: Mapping[str, typing.Any] | None,
    new: Mapping[str, typing.Any] | None,
) -> None:
    """After a TrainingJob's cycle wrote (or left) its status: counts a new failure."""
    counter = TRAINING_FAILURES.labels(namespace)
    if _phase(new) == "Failed" and _phase(old) != "Failed":
        counter.inc()


def modelversion_written(
    namespace: str,
    model: str,
    old: Mapping[str, typing.Any] | None,
    new: Mapping[str, typing.Any] | None,
) -> None:
    """After a ModelVersion's status write: counts a rollout that ended without promotion."""
    phase = _phase(new)
    if phase in ROLLBACK_PHASES and _phase(old) != phase:
        ROLLBACKS.labels(namespace, model, str(phase)).inc()


class _StepCollector(registry.Collector):
    """``toque_modelversion_step_started_timestamp_seconds``: when each Progressing or
    Paused ModelVersion entered its current canary step (status.stepStartedAt)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, str], tuple[str, str, str, float]] = {}

    def set(
        self,
        namespace: str,
        name: str,
        model: str,
        status: Mapping[str, typing.Any] | None,
    ) -> None:
        """Records the version's step (or forgets it: settled, or no step), and makes its
        model's rollback counters exist."""
        for ended in ROLLBACK_PHASES:
            ROLLBACKS.labels(namespace, model, ended)
        status = status or {}
        started = kubestatus.parse_time(status.get("stepStartedAt"))
        phase = status.get("phase")
        with self._lock:
            if phase not in STEP_PHASES or started is None:
                self._steps.pop((namespace, name), None)
                return
            step = str(status.get("currentStep") or 0)
            self._steps[(namespace, name)] = (model, str(phase), step, started.timestamp())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._steps.pop((namespace, name), None)

    def collect(self) -> Iterator[core.Metric]:
        family = gauge(
            "toque_modelversion_step_started_timestamp_seconds",
            "When a Progressing or Paused ModelVersion entered its current canary step.",
            ["namespace", "modelversion", "model", "phase", "step"],
        )
        with self._lock:
            items = sorted(self._steps.items())
        for (namespace, name), (model, phase, step, started) in items:
            family.add_metric([namespace, name, model, phase, step], started)
        yield family


MODELVERSION_STEPS = _StepCollector()
prometheus_client.REGISTRY.register(MODELVERSION_STEPS)


# -- for the chart's Grafana dashboards (dashboards/, helm/toque/dashboards/) ----------------
# Run times, GPU time, the work the operator owes (in flight, waiting for a retry) and which
# replica leads. Operator restarts need nothing here: process_start_time_seconds comes with
# prometheus_client's default registry. The API latency histogram is in toque.clients.kube.

TRAINING_DURATION = prometheus_client.Histogram(
    "toque_trainingjob_duration_seconds",
    "Run time of a finished TrainingJob, its Job's start to completion, by final phase.",
    ["namespace", "phase"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
)
GPU_SECONDS = prometheus_client.Counter(
    "toque_trainingjob_gpu_seconds",
    "GPU time of finished TrainingJobs: the GPUs a run requested times its run time.",
    ["namespace"],
)
IN_FLIGHT = prometheus_client.Gauge(
    "toque_reconcile_in_flight",
    "Reconcile cycles running or waiting for their object's lock.",
    ["kind"],
)
LEADER = prometheus_client.Gauge(
    "toque_operator_leader",
    "1 while this process is the active replica of its election, 0 while it stands by.",
    ["election"],
)
LEADER_CHANGES = prometheus_client.Counter(
    "toque_operator_leader_changes",
    "Times this process became the active replica of its election.",
    ["election"],
)
FINISHED_PHASES = ("Succeeded", "Failed")
# A retry kopf was asked for and never ran (the object was deleted meanwhile) stops counting
# this long after it was due.
QUEUE_GRACE_SECONDS = 120.0


def trainingjob_finished(
    namespace: str,
    spec: Mapping[str, typing.Any] | None,
    old: Mapping[str, typing.Any] | None,
    new: Mapping[str, typing.Any] | None,
) -> None:
    """After a TrainingJob's status write: the run time and GPU time of a run that just
    finished (the written status has both of its Job's times). The series exist at 0 from
    the namespace's first run on, so increase() sees the first finished run too."""
    gpus = _gpus(spec)
    for final in FINISHED_PHASES:
        TRAINING_DURATION.labels(namespace, final)
    if gpus:
        GPU_SECONDS.labels(namespace)
    phase = _phase(new)
    if phase not in FINISHED_PHASES or _phase(old) in FINISHED_PHASES:
        return
    started = kubestatus.parse_time((new or {}).get("startTime"))
    completed = kubestatus.parse_time((new or {}).get("completionTime"))
    if started is None or completed is None or completed < started:
        return
    seconds = (completed - started).total_seconds()
    TRAINING_DURATION.labels(namespace, str(phase)).observe(seconds)
    if gpus:
        GPU_SECONDS.labels(namespace).inc(gpus * seconds)


def _gpus(spec: Mapping[str, typing.Any] | None) -> int:
    value = ((spec or {}).get("resources") or {}).get("gpu")
    return value if isinstance(value, int) and value > 0 else 0


def leadership(election: str, active: bool) -> None:
    """Called by whoever runs the leader election: this process leads ``election`` now, or
    stands by. Call it with False when standing by first, so the series exist at 0 and a
    takeover is one increase of ``toque_operator_leader_changes_total``."""
    with _leading_lock:
        became = active and not _leading.get(election, False)
        _leading[election] = active
    changes = LEADER_CHANGES.labels(election)
    if became:
        changes.inc()
    LEADER.labels(election).set(1.0 if active else 0.0)


_leading_lock = threading.Lock()
_leading: dict[str, bool] = {}


class _QueueCollector(registry.Collector):
    """``toque_reconcile_queue_depth{kind}``: objects whose last cycle did not settle them
    (an error, or a ``LookAgain``), so kopf owes them another cycle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: set[str] = set()
        self._due: dict[tuple[str, str, str], float] = {}

    def waiting(self, kind: str, namespace: str, key: str, until: float) -> None:
        """The object waits for a retry; forgotten after ``until`` (a monotonic time)."""
        with self._lock:
            self._kinds.add(kind)
            self._due[(kind, namespace, key)] = until

    def settled(self, kind: str, namespace: str, key: str) -> None:
        with self._lock:
            self._kinds.add(kind)
            self._due.pop((kind, namespace, key), None)

    def depth(self, now: float) -> dict[str, int]:
        with self._lock:
            self._due = {k: until for k, until in self._due.items() if until >= now}
            out = dict.fromkeys(self._kinds, 0)
            for kind, _, _ in self._due:
                out[kind] += 1
            return out

    def collect(self) -> Iterator[core.Metric]:
        family = gauge(
            "toque_reconcile_queue_depth",
            "Objects waiting for kopf to retry their cycle (their last one failed or did not "
            "settle them).",
            ["kind"],
        )
        for kind, n in sorted(self.depth(time.monotonic()).items()):
            family.add_metric([kind], n)
        yield family


QUEUE = _QueueCollector()
prometheus_client.REGISTRY.register(QUEUE)
