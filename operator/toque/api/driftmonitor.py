"""The DriftMonitor kind: drift of live traffic against a reference, and retraining."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import pydantic

from toque.api import conditions as cond
from toque.api import schema
from toque.api.schema import Rule

Method = Literal["psi", "ks", "chi2", "jsd", "wasserstein"]
# ks and chi2 thresholds are p-values (drift when p < threshold); jsd is a Jensen-Shannon
# distance in [0, 1]; psi and wasserstein scores have no upper bound.
P_VALUE_METHODS = ("ks", "chi2")
NUMERIC_ONLY_METHODS = ("ks", "wasserstein")
THRESHOLD_DOC = (
    "ks and chi2 take a p-value in (0, 1), jsd a distance in (0, 1], psi and wasserstein any "
    "value above 0; without a method (chosen per feature at run time) it must be below 1"
)


def threshold_problem(method: str | None, threshold: float) -> str | None:
    """Why ``threshold`` can never be reached by ``method`` (None: it can)."""
    if method in P_VALUE_METHODS or method is None:
        ok = threshold < 1
    elif method == "jsd":
        ok = threshold <= 1
    else:
        ok = True
    if ok:
        return None
    return f"threshold {threshold:g} can never be reached by {method or 'the default method'}"


def _threshold_cel(method: str) -> str:
    return (
        f"({method} in ['ks', 'chi2'] || {method} == '' ? self.threshold < 1.0 : "
        f"({method} == 'jsd' ? self.threshold <= 1.0 : true))"
    )


def _reference(r: Reference) -> str | None:
    if (r.dataset is not None) == bool(r.training_data):
        return "set exactly one of dataset or trainingData: true"
    return None


class Reference(schema.SpecModel):
    """Reference distribution: a dataset version, or the live version's training data."""

    cel_rules = (
        Rule(
            "has(self.dataset) != (has(self.trainingData) && self.trainingData)",
            "set exactly one of dataset or trainingData: true",
            _reference,
        ),
    )

    dataset: schema.DatasetRef | None = None
    training_data: bool | None = None


def _own_threshold(f: FeatureRule) -> str | None:
    if f.method is None or f.threshold is None:
        return None
    problem = threshold_problem(f.method, f.threshold)
    return f"feature {f.name!r}: {problem}; {THRESHOLD_DOC}" if problem else None


def _method_fits_type(f: FeatureRule) -> str | None:
    if f.type == "categorical" and f.method in NUMERIC_ONLY_METHODS:
        return f"feature {f.name!r}: {f.method} needs numeric values, not categorical"
    return None


class FeatureRule(schema.SpecModel):
    """How one feature is tested."""

    cel_rules = (
        Rule(
            f"!has(self.method) || !has(self.threshold) || {_threshold_cel('self.method')}",
            f"the threshold can never be reached by the method: {THRESHOLD_DOC}",
            _own_threshold,
            ".threshold",
            message_expression=(
                '"feature \'" + self.name + "\': its threshold can never be reached by " + '
                f"self.method + '; {THRESHOLD_DOC}'"
            ),
        ),
        Rule(
            "!has(self.type) || self.type != 'categorical' || !has(self.method) || "
            "!(self.method in ['ks', 'wasserstein'])",
            "ks and wasserstein need numeric values, not categorical",
            _method_fits_type,
            ".method",
            message_expression=(
                '"feature \'" + self.name + "\': " + self.method + '
                "' needs numeric values, not categorical'"
            ),
        ),
    )

    name: str = pydantic.Field(min_length=1, max_length=250)
    type: Literal["numeric", "categorical"] | None = None
    method: Method | None = None
    threshold: float | None = pydantic.Field(default=None, gt=0.0, description=THRESHOLD_DOC)


class DatasetRule(schema.SpecModel):
    """The dataset drifts when at least ``driftShare`` of its features drift."""

    drift_share: float = pydantic.Field(
        default=0.5, gt=0.0, le=1.0, description="Share of drifted features, above 0, up to 1."
    )


class RetrainSpec(schema.SpecModel):
    """What to do on drift."""

    enabled: bool = True
    data_tag: str = pydantic.Field(default="latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    cooldown: schema.Duration = pydantic.Field(
        default="1h", description="Least time between two retrains (0s: none)."
    )


def _schedule(s: DriftMonitorSpec) -> str | None:
    if s.mode == "scheduled" and s.schedule is None:
        return "scheduled mode needs a schedule"
    if s.mode == "continuous" and s.schedule is not None:
        return "schedule is only valid in scheduled mode"
    return None


def _default_thresholds(s: DriftMonitorSpec) -> str | None:
    for f in s.features or []:
        if f.method is not None or f.threshold is None:
            continue
        if threshold_problem(s.default_method, f.threshold):
            method = f" {s.default_method}" if s.default_method else ""
            return (
                f"feature {f.name!r}: threshold {f.threshold:g} can never be reached by the "
                f"default method{method}; {THRESHOLD_DOC}"
            )
    return None


_INHERITED = "!has(f.method) && has(f.threshold) && !{0}"
_INHERITED_THRESHOLD = "(has(self.defaultMethod) ? self.defaultMethod : '')"
_BAD_DEFAULT = _INHERITED.format(
    _threshold_cel(_INHERITED_THRESHOLD).replace("self.threshold", "f.threshold")
)


class DriftMonitorSpec(schema.SpecModel):
    """Desired drift monitoring of one model's live traffic."""

    cel_rules = (
        Rule(
            "self.mode != 'scheduled' || has(self.schedule)",
            "scheduled mode needs a schedule",
            lambda s: _schedule(s) if s.mode == "scheduled" else None,
            ".schedule",
        ),
        Rule(
            "self.mode != 'continuous' || !has(self.schedule)",
            "schedule is only valid in scheduled mode",
            lambda s: _schedule(s) if s.mode == "continuous" else None,
            ".schedule",
        ),
        Rule(
            f"!has(self.features) || !self.features.exists(f, {_BAD_DEFAULT})",
            f"a feature's threshold can never be reached by the default method: {THRESHOLD_DOC}",
            _default_thresholds,
            ".features",
        ),
    )

    model: schema.ModelName
    reference: Reference
    features: Annotated[list[FeatureRule], schema.ListMap("name")] | None = pydantic.Field(
        default=None,
        max_length=1024,
        description="Per-feature rules; empty means every column of the reference schema.",
    )
    default_method: Method | None = None
    dataset_rule: DatasetRule | None = None
    mode: Literal["continuous", "scheduled"] = "continuous"
    interval: schema.PositiveDuration = "5m"
    schedule: schema.CronSchedule | None = None
    window: schema.PositiveDuration = "1h"
    min_samples: int = pydantic.Field(default=500, ge=1)
    on_drift: RetrainSpec | None = None


class FeatureScore(schema.KubeModel):
    """Latest score of one feature."""

    name: str
    method: str
    score: float
    threshold: float
    drifted: bool


class DriftMonitorStatus(schema.KubeModel):
    """Observed drift, written only by the operator."""

    phase: Literal["Pending", "Healthy", "Drifted", "InsufficientData", "Failed"] | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[cond.Condition] = pydantic.Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    last_evaluation_time: dt.datetime | None = None
    samples: int | None = None
    features: list[FeatureScore] | None = None
    drifted: bool | None = None
    drift_share: float | None = None
    last_retrain_time: dt.datetime | None = None
    last_retrain_job: str | None = None


class DriftMonitor(schema.KubeModel):
    """Schema anchor for the kind."""

    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None
