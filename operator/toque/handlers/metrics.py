"""Prometheus metrics of the operator (prefix ``toque_``), served by ``settings.startup``."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator

import prometheus_client
from prometheus_client import core, registry

from toque.api import modelversion as mv
from toque.api import trainingjob as tj

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
