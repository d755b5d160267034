"""Every metric family Toque exports, and why the few without a panel have none.

The operator's families are read from prometheus_client's default registry once the modules
that register them are imported (``toque.handlers.metrics``, ``toque.clients.kube``, and the
default process, platform and GC collectors); the model server's from a ``Metrics`` of a
classifier and one of a regressor, which between them yield every family it can. Called by
``tests/unit/test_dashboards.py``: a panel may only use an exported name, and an exported
family needs a panel or a line in ``UNPANELLED``.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import registry

from toque.clients import kube
from toque.handlers import metrics as operator_metrics
from toque.serving import metrics as serving_metrics

# Sample names a family of each type exposes (prometheus_client adds the suffixes).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}

UNPANELLED = {
    "toque_serving_prediction_value": "regressors only, and the end-to-end scenario serves "
    "classifiers, so a panel would be dead there; the canary's prediction-shift check reads it",
    "toque_serving_feedback_abs_error": "regressors only (no regressor in the end-to-end "
    "scenario); the DriftMonitor reads it",
    "toque_serving_feedback_squared_error": "regressors only (no regressor in the end-to-end "
    "scenario); the DriftMonitor reads it",
    "toque_serving_group_predictions": "input of the DriftMonitor's bias check, whose verdicts "
    "(toque_drift_group_positive_rate, _bias_disparity, _biased) have panels",
    "toque_serving_feedback_group": "input of the DriftMonitor's bias check on error rates; its "
    "verdicts have panels",
    "process_virtual_memory_bytes": "address space, not memory used: the resident memory panel "
    "shows what counts",
    "python_gc_objects_collected": "interpreter internals, for chasing a leak by hand",
    "python_gc_objects_uncollectable": "interpreter internals, for chasing a leak by hand",
    "python_gc_collections": "interpreter internals, for chasing a leak by hand",
    "python_info": "the interpreter's version, a constant",
}

# Imported for what they register in the default registry.
_REGISTERING = (operator_metrics.RECONCILES, kube.REQUEST_DURATION)
_DEFAULT_COLLECTORS = (
    prometheus_client.PROCESS_COLLECTOR,
    prometheus_client.PLATFORM_COLLECTOR,
    prometheus_client.GC_COLLECTOR,
)


def _families(collector: registry.Collector) -> dict[str, str]:
    return {family.name: family.type for family in collector.collect()}


def operator() -> dict[str, str]:
    """The operator's families, name → type."""
    out = {
        name: kind
        for name, kind in _families(prometheus_client.REGISTRY).items()
        if name.startswith("toque_")
    }
    for collector in _DEFAULT_COLLECTORS:
        out.update(_families(collector))
    return out


def serving() -> dict[str, str]:
    """The model server's families, name → type, over a classifier and a regressor."""
    classifier = serving_metrics.Layout(
        "m", "1", "sha256:0", [("x", 0, [1.0])], [("c", 1, ["a"])], None, ["0", "1"], True
    )
    regressor = serving_metrics.Layout("m", "1", "sha256:0", [], [], [1.0], None)
    out: dict[str, str] = {}
    for layout in (classifier, regressor):
        out.update(_families(serving_metrics.registry_for(serving_metrics.Metrics(layout))))
    return out


def exported() -> dict[str, str]:
    return {**operator(), **serving()}


def family_of(sample: str, families: dict[str, str]) -> str | None:
    """The family a sample name belongs to (``x_total`` → counter ``x``), or None."""
    for name, kind in families.items():
        if any(sample == name + suffix for suffix in SUFFIXES.get(kind, ("",))):
            return name
    return None
