"""Prometheus metrics of the operator (prefix ``toque_``), served by ``settings.startup``.

``DRIFT`` holds each DriftMonitor's last evaluation (``toque_drift_*``); the DriftMonitor
handler replaces a monitor's series as a whole after every evaluation, so a feature or a
version that went away leaves no stale series behind.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator

import prometheus_client
from prometheus_client import core, registry

from toque.api import driftmonitor as dm
from toque.api import modelversion as mv
from toque.api import trainingjob as tj
from toque.reconcile import driftmonitor as drift

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
