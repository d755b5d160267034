"""The DriftMonitor kind: drift of live traffic against a reference, and retraining.

The spec says what to compare (the live version's training profile, or a dataset version),
how (per-feature methods and thresholds, a dataset-level share, performance and bias
limits), when (continuously from the serving pods' histograms in Prometheus, or on a cron
schedule by a CronJob over the rows the servers sampled) and what to do on drift (clone a
TrainingJob onto a newer data tag). The status is what ``toque.reconcile.driftmonitor``
makes of the last evaluation. The names of the labels and annotations a retraining
TrainingJob carries live here too, beside the kind they point back to.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import pydantic

from toque.api import common, constants, kubetypes, schema
from toque.api import conditions as cond
from toque.api.schema import Rule

Method = Literal["psi", "ks", "chi2", "jsd", "wasserstein", "ztest"]
Phase = Literal["Pending", "Healthy", "Drifted", "InsufficientData", "Failed"]
ThresholdSource = Literal["fixed", "default", "auto"]
Verdict = Literal["Drift", "NoDrift", "InsufficientData", "Constant", "Missing"]
# ks, chi2 and ztest thresholds are p-values (drift when p < threshold); jsd is a
# Jensen-Shannon distance in [0, 1]; psi and wasserstein scores have no upper bound.
P_VALUE_METHODS = ("ks", "chi2", "ztest")
NUMERIC_ONLY_METHODS = ("ks", "wasserstein")
THRESHOLD_DOC = (
    "ks, chi2 and ztest take a p-value in (0, 1), jsd a distance in (0, 1], psi and "
    "wasserstein any value above 0; without a method (chosen per feature at run time) it "
    "must be below 1"
)

# Condition types of the status.
READY = "Ready"
DRIFTED = "Drifted"
PERFORMANCE_DEGRADED = "PerformanceDegraded"
BIASED = "Biased"

# A retraining TrainingJob names its monitor and the evaluation that started it.
LABEL_DRIFT_MONITOR = f"{constants.GROUP}/drift-monitor"
ANNOTATION_TRIGGERED_BY = f"{constants.GROUP}/triggered-by"
ANNOTATION_TRIGGER_EVALUATION = f"{constants.GROUP}/trigger-evaluation"
ANNOTATION_TRIGGER_REASON = f"{constants.GROUP}/trigger-reason"
ANNOTATION_RETRAINED_FROM = f"{constants.GROUP}/retrained-from"


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


def _p_value_list() -> str:
    return "[" + ", ".join(f"'{m}'" for m in P_VALUE_METHODS) + "]"


def _threshold_cel(method: str) -> str:
    return (
        f"({method} in {_p_value_list()} || {method} == '' ? self.threshold < 1.0 : "
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

    dataset: schema.DatasetRef | None = pydantic.Field(
        default=None,
        description="A dataset version to compare with (scheduled mode only): "
        "NAME@sha256:<64 hex>, NAME:TAG or NAME.",
    )
    training_data: bool | None = pydantic.Field(
        default=None,
        description="Compare with the live version's training profile (the run's "
        "toque/feature-bins.json, whose buckets the model server's histograms use).",
    )


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


class PerformanceSpec(schema.SpecModel):
    """A performance drop: the accuracy measured from fed-back labels, or else the
    label-free (CBPE-style) estimate, falls more than ``maxDrop`` below the reference
    (validation) accuracy."""

    max_drop: float = pydantic.Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="Largest tolerated drop of accuracy, in (0, 1] (0.05: five points).",
    )


class BiasSpec(schema.SpecModel):
    """Positive-rate disparity between the groups of one categorical feature (and, with
    fed-back labels, error-rate disparity)."""

    feature: str = pydantic.Field(
        min_length=1, max_length=250, description="A categorical model input, e.g. region."
    )
    max_disparity: float = pydantic.Field(
        default=0.2,
        gt=0.0,
        le=1.0,
        description="Largest tolerated gap between the groups' rates, in (0, 1].",
    )


class RetrainSpec(schema.SpecModel):
    """What to do on drift: clone a TrainingJob onto a newer data tag."""

    enabled: bool = True
    data_tag: str = pydantic.Field(
        default="latest",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        description="Tag every dataset of the clone is re-pointed to.",
    )
    cooldown: schema.Duration = pydantic.Field(
        default="1h", description="Least time between two retrains (0s: none)."
    )
    on_performance_drop: bool = pydantic.Field(
        default=False,
        description="Also retrain when performance drops (needs spec.performance).",
    )
    training_job: schema.DnsSubdomain | None = pydantic.Field(
        default=None,
        description="TrainingJob to clone; default: the one that produced the live version.",
    )


class CheckPod(schema.SpecModel):
    """Where and how the pod of a scheduled check runs."""

    image: schema.ImageRef | None = pydantic.Field(
        default=None, description="Default: the runtime image from the operator's config."
    )
    resources: common.ComputeResources | None = pydantic.Field(
        default=None, description="Default: 250m CPU and 1Gi of memory."
    )
    node_selector: kubetypes.NodeSelectorMap | None = None
    tolerations: list[kubetypes.Toleration] | None = pydantic.Field(default=None, max_length=64)


def _schedule(s: DriftMonitorSpec) -> str | None:
    if s.mode == "scheduled" and s.schedule is None:
        return "scheduled mode needs a schedule"
    if s.mode == "continuous" and s.schedule is not None:
        return "schedule is only valid in scheduled mode"
    return None


CONTINUOUS_DATASET = (
    "a dataset reference needs mode: scheduled; a continuous monitor reads the model "
    "server's histograms, whose buckets are the live version's training profile, so it "
    "needs reference.trainingData: true"
)


def _continuous_reference(s: DriftMonitorSpec) -> str | None:
    if s.mode == "continuous" and s.reference.dataset is not None:
        return CONTINUOUS_DATASET
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


CHECK_POD_SCHEDULED = "checkPod is only used in scheduled mode (a continuous monitor runs no pod)"


def _check_pod_scheduled(s: DriftMonitorSpec) -> str | None:
    return CHECK_POD_SCHEDULED if s.check_pod is not None and s.mode != "scheduled" else None


PERFORMANCE_NEEDED = "onDrift.onPerformanceDrop needs spec.performance (its maxDrop)"


def _performance_needed(s: DriftMonitorSpec) -> str | None:
    if s.on_drift and s.on_drift.on_performance_drop and s.performance is None:
        return PERFORMANCE_NEEDED
    return None


def _bias_categorical(s: DriftMonitorSpec) -> str | None:
    if s.bias is None:
        return None
    for f in s.features or []:
        if f.name == s.bias.feature and f.type == "numeric":
            return f"bias.feature {f.name!r} is declared numeric; groups need a categorical feature"
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
            "self.mode != 'continuous' || !has(self.reference.dataset)",
            CONTINUOUS_DATASET,
            _continuous_reference,
            ".reference",
        ),
        Rule(
            "self.mode == 'scheduled' || !has(self.checkPod)",
            CHECK_POD_SCHEDULED,
            _check_pod_scheduled,
            ".checkPod",
        ),
        Rule(
            f"!has(self.features) || !self.features.exists(f, {_BAD_DEFAULT})",
            f"a feature's threshold can never be reached by the default method: {THRESHOLD_DOC}",
            _default_thresholds,
            ".features",
        ),
        Rule(
            "!has(self.onDrift) || !has(self.onDrift.onPerformanceDrop) || "
            "!self.onDrift.onPerformanceDrop || has(self.performance)",
            PERFORMANCE_NEEDED,
            _performance_needed,
            ".onDrift",
        ),
        Rule(
            "!has(self.bias) || !has(self.features) || !self.features.exists(f, "
            "f.name == self.bias.feature && has(f.type) && f.type == 'numeric')",
            "bias.feature is declared numeric; groups need a categorical feature",
            _bias_categorical,
            ".bias",
        ),
    )

    model: schema.ModelName
    reference: Reference
    features: Annotated[list[FeatureRule], schema.ListMap("name")] | None = pydantic.Field(
        default=None,
        max_length=1024,
        description="Per-feature rules; empty means every feature of the reference profile.",
    )
    default_method: Method | None = pydantic.Field(
        default=None,
        description="Method of features without their own; default: chosen per feature by "
        "sample size (ks/chi2/ztest up to 1000 reference rows, wasserstein/jsd above).",
    )
    thresholds: Literal["default", "auto"] = pydantic.Field(
        default="default",
        description="How a feature without its own threshold gets one: the method's default, "
        "or auto (calibrated on chunks of the reference, so the noise of the reference itself "
        "is not drift).",
    )
    dataset_rule: DatasetRule | None = None
    mode: Literal["continuous", "scheduled"] = pydantic.Field(
        default="continuous",
        description="continuous: every interval, from the serving pods' histograms in "
        "Prometheus (needs reference.trainingData); scheduled: a CronJob checks the rows the "
        "servers sampled to the data store.",
    )
    interval: schema.PositiveDuration = pydantic.Field(
        default="5m", description="Time between two evaluations in continuous mode."
    )
    schedule: schema.CronSchedule | None = None
    check_pod: CheckPod | None = None
    window: schema.PositiveDuration = pydantic.Field(
        default="1h", description="How far back the current traffic reaches."
    )
    min_samples: int = pydantic.Field(
        default=500,
        ge=1,
        description="Fewer current rows give InsufficientData, never a verdict.",
    )
    performance: PerformanceSpec | None = None
    bias: BiasSpec | None = None
    on_drift: RetrainSpec | None = None


def rules_document(spec: DriftMonitorSpec) -> dict[str, Any]:
    """The spec's drift rules as ``toque drift check --rules`` and
    ``toque.drift.types.rules_from_dict`` read them: features (name, type, method,
    threshold), defaultMethod, thresholds, driftShare, minSamples."""
    out: dict[str, Any] = {
        "thresholds": spec.thresholds,
        "driftShare": (spec.dataset_rule or DatasetRule()).drift_share,
        "minSamples": spec.min_samples,
    }
    if spec.default_method is not None:
        out["defaultMethod"] = spec.default_method
    if spec.features:
        out["features"] = [f.to_kube() for f in spec.features]
    return out


class FeatureScore(schema.KubeModel):
    """The latest verdict on one feature."""

    name: str
    kind: str | None = None
    method: str | None = None
    score: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    threshold_source: ThresholdSource | None = None
    drifted: bool | None = None
    verdict: Verdict | None = None
    missing_rate: float | None = pydantic.Field(
        default=None, description="Share of current rows without a value."
    )
    message: str | None = None


class OutputDrift(schema.KubeModel):
    """Drift of the model's predictions against its predictions on the reference."""

    method: str | None = None
    score: float | None = None
    threshold: float | None = None
    drifted: bool | None = None
    missing_rate: float | None = pydantic.Field(
        default=None,
        description="Share of the window's rows the model server counted without a "
        "prediction; a rise of it is output drift too.",
    )
    message: str | None = None


class MultivariateDrift(schema.KubeModel):
    """PCA reconstruction error of the current rows against the reference's bound."""

    error: float | None = None
    threshold: float | None = None
    drifted: bool | None = None


class VersionUsage(schema.KubeModel):
    """Traffic of one registry version of the model over the window."""

    version: str
    requests: float | None = None
    rows: float | None = None
    share: float | None = pydantic.Field(default=None, description="Share of the rows.")


class GroupRates(schema.KubeModel):
    """One group of the bias feature."""

    group: str
    rows: float | None = None
    positive_rate: float | None = None
    error_rate: float | None = None


class BiasStatus(schema.KubeModel):
    """Rates per group of spec.bias.feature and their largest gaps."""

    feature: str
    positive_class: str | None = None
    groups: list[GroupRates] | None = None
    disparity: float | None = pydantic.Field(
        default=None, description="Largest gap of positive rates between two groups."
    )
    error_disparity: float | None = pydantic.Field(
        default=None, description="Largest gap of error rates (needs fed-back labels)."
    )
    biased: bool | None = None


class DriftMonitorStatus(schema.KubeModel):
    """Observed drift, written only by the operator."""

    phase: Phase | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[cond.Condition] = pydantic.Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    last_evaluation_time: dt.datetime | None = None
    live_version: str | None = pydantic.Field(
        default=None, description="The ModelVersion evaluated (the model's promoted one)."
    )
    reference: str | None = pydantic.Field(
        default=None, description="Where the reference profile came from."
    )
    samples: int | None = pydantic.Field(default=None, description="Current rows evaluated.")
    total_features: int | None = pydantic.Field(
        default=None, description="Features of the model's reference profile."
    )
    monitored_features: int | None = None
    features: list[FeatureScore] | None = pydantic.Field(default=None, max_length=1024)
    drifted_features: list[str] | None = None
    drift_share: float | None = None
    drifted: bool | None = pydantic.Field(default=None, description="Dataset-level drift.")
    output_drift: OutputDrift | None = None
    multivariate: MultivariateDrift | None = None
    estimated_accuracy: float | None = pydantic.Field(
        default=None, description="Accuracy estimated from the confidence of the predictions."
    )
    accuracy: float | None = pydantic.Field(
        default=None, description="Accuracy on the fed-back labels of the window."
    )
    reference_accuracy: float | None = None
    labeled_rows: int | None = None
    usage: list[VersionUsage] | None = None
    bias: BiasStatus | None = None
    last_retrain_time: dt.datetime | None = None
    last_retrain_job: str | None = None
    retrains: int | None = pydantic.Field(default=None, description="Retrainings started.")
    retrain_message: str | None = pydantic.Field(
        default=None, description="Why the last wanted retraining did not start."
    )
    last_scheduled_job: str | None = pydantic.Field(
        default=None, description="The last scheduled check Job whose result is recorded."
    )


class DriftMonitor(schema.KubeModel):
    """Schema anchor for the kind."""

    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None
