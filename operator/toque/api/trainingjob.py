"""The TrainingJob kind: one training run on a CPU or GPU node, tracked and gated."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

import pydantic

from toque.api import common, kubetypes, schema
from toque.api import conditions as cond
from toque.api import modelversion as mv
from toque.api import validators as v
from toque.api.schema import Rule

Phase = Literal["Pending", "Suspended", "Running", "Succeeded", "Failed"]
PHASES: tuple[str, ...] = ("Pending", "Suspended", "Running", "Succeeded", "Failed")


class DatasetInput(schema.SpecModel):
    """A dataset version the run reads; tags are resolved to digests when the run starts."""

    ref: schema.DatasetRef
    alias: str | None = pydantic.Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=63,
        description="Name the user's code sees the dataset under (default: the dataset name); "
        "unique within the run.",
    )


class CodeSource(schema.SpecModel):
    """A code snapshot pushed with ``toque code push``: the git-tracked files of a project at a
    revision, stored content-addressed like a dataset. The trainer fetches and verifies it and
    puts it first on ``sys.path``, so a change trains without building an image."""

    ref: schema.DatasetRef


def dataset_alias(d: DatasetInput) -> str:
    """The name the run's code sees a dataset under."""
    return d.alias or d.ref.split("@")[0].split(":")[0]


def _unique_aliases(datasets: list[DatasetInput]) -> str | None:
    seen: set[str] = set()
    for d in datasets:
        alias = dataset_alias(d)
        if alias in seen:
            return (
                f"dataset aliases must be unique: {alias!r} is used by more than one entry (an "
                "alias defaults to the dataset name); give each entry its own alias"
            )
        seen.add(alias)
    return None


_ALIAS = "(has({0}.alias) ? {0}.alias : {0}.ref.split('@')[0].split(':')[0])"
_DUPLICATE = f"!self.exists_one(e, {_ALIAS.format('e')} == {_ALIAS.format('d')})"
UNIQUE_ALIASES = Rule(
    f"!self.exists(d, {_DUPLICATE})",
    "dataset aliases must be unique (an alias defaults to the dataset name)",
    _unique_aliases,
)


class ModelSpec(schema.SpecModel):
    """The model the run produces and logs to MLflow."""

    name: schema.ModelName
    flavor: Literal["sklearn", "pytorch", "pyfunc"] = pydantic.Field(
        default="sklearn", description="MLflow flavour the model is logged with."
    )


def _reachable(t: MetricThreshold) -> str | None:
    bounded = schema.matches(v.BOUNDED_METRIC_PATTERN, t.metric)
    nonnegative = bounded or schema.matches(v.NONNEGATIVE_METRIC_PATTERN, t.metric)
    if not nonnegative:
        return None
    low_ok = t.value >= 0 and not (t.op == "<" and t.value == 0)
    high_ok = not bounded or (t.value <= 1 and not (t.op == ">" and t.value == 1))
    if low_ok and high_ok:
        return None
    span = "between 0 and 1" if bounded else "never below 0"
    return f"{t.metric} is {span}, so {t.metric} {t.op} {t.value:g} can never decide the gate"


_BOUNDED = f"self.metric.matches({schema.cel_string(v.BOUNDED_METRIC_PATTERN)})"
_NONNEGATIVE = f"self.metric.matches({schema.cel_string(v.NONNEGATIVE_METRIC_PATTERN)})"
_LOW_OK = "(self.value >= 0.0 && !(self.op == '<' && self.value == 0.0))"
_HIGH_OK = "(self.value <= 1.0 && !(self.op == '>' && self.value == 1.0))"


class MetricThreshold(schema.SpecModel):
    """A metric must compare to a value, e.g. accuracy >= 0.9. Metrics known to lie in
    [0, 1] (accuracy, precision, recall, f1, auc...) or never below 0 (loss, mse, rmse,
    mae...) take only thresholds that can decide the gate."""

    cel_rules = (
        Rule(
            f"({_BOUNDED} ? ({_LOW_OK} && {_HIGH_OK}) : true) && "
            f"({_NONNEGATIVE} ? {_LOW_OK} : true)",
            "the threshold lies outside the values the metric can take",
            _reachable,
            ".value",
            message_expression=(
                f"self.metric + ({_BOUNDED} ? ' is between 0 and 1' : ' is never below 0') + "
                "': a threshold of ' + self.metric + ' ' + self.op + ' that value can never "
                "decide the gate'"
            ),
        ),
    )

    metric: str = pydantic.Field(min_length=1, max_length=250)
    op: Literal[">=", ">", "<=", "<"] = pydantic.Field(description="Comparison operator.")
    value: float


def _beatable(r: ChampionRule) -> str | None:
    if schema.matches(v.BOUNDED_METRIC_PATTERN, r.metric) and r.min_delta >= 1:
        return f"{r.metric} is between 0 and 1: a minDelta of {r.min_delta:g} can never be met"
    return None


class ChampionRule(schema.SpecModel):
    """The new model must beat the model holding ``alias`` in the registry."""

    cel_rules = (
        Rule(
            f"!{_BOUNDED} || !has(self.minDelta) || self.minDelta < 1.0",
            "minDelta must be below 1 for a metric between 0 and 1",
            _beatable,
            ".minDelta",
            message_expression=(
                "self.metric + ' is between 0 and 1: a minDelta of 1 or more can never be met'"
            ),
        ),
    )

    metric: str = pydantic.Field(min_length=1, max_length=250)
    direction: Literal["maximize", "minimize"] = "maximize"
    min_delta: float = pydantic.Field(default=0.0, ge=0.0, description="Required margin.")
    alias: schema.ModelAlias = "champion"


class GapRule(schema.SpecModel):
    """Overfitting guard: |train metric - validation metric| must stay under ``max``."""

    metric: str = pydantic.Field(min_length=1, max_length=250)
    max: float = pydantic.Field(ge=0.0)


class FairnessRule(schema.SpecModel):
    """The metric's spread across groups of ``groupColumn`` must stay under ``maxDisparity``."""

    group_column: str = pydantic.Field(min_length=1, max_length=250)
    metric: str = pydantic.Field(min_length=1, max_length=250)
    max_disparity: schema.Fraction


class EvaluationGate(schema.SpecModel):
    """Rules a finished run must pass before its model is promoted."""

    thresholds: list[MetricThreshold] | None = pydantic.Field(default=None, max_length=32)
    must_beat_champion: ChampionRule | None = None
    max_train_validation_gap: GapRule | None = None
    fairness: FairnessRule | None = None


class PromoteTemplate(schema.SpecModel):
    """The ModelVersion created when the gate passes (model and source come from the run,
    so the run needs spec.model)."""

    labels: common.UserLabels | None = None
    annotations: common.ModelVersionAnnotations | None = None
    alias: schema.ModelAlias | None = None
    serving: mv.ServingSpec | None = None
    rollout: mv.RolloutSpec | None = None


def _one_program(s: TrainingJobSpec) -> str | None:
    if (s.entrypoint is None) == (s.command is None):
        return "exactly one of entrypoint or command must be set"
    return None


def _args(s: TrainingJobSpec) -> str | None:
    return "args require command" if s.args is not None and s.command is None else None


def _promote(s: TrainingJobSpec) -> str | None:
    if s.promote is not None and s.model is None:
        return "promote needs spec.model: the ModelVersion is registered under model.name"
    return None


def _champion(s: TrainingJobSpec) -> str | None:
    if s.evaluation and s.evaluation.must_beat_champion and s.model is None:
        return "mustBeatChampion needs spec.model: the champion is read from model.name"
    return None


class TrainingJobSpec(schema.SpecModel):
    """Desired training run."""

    cel_rules = (
        Rule(
            "has(self.entrypoint) != has(self.command)",
            "exactly one of entrypoint or command must be set",
            _one_program,
        ),
        Rule("!has(self.args) || has(self.command)", "args require command", _args, ".args"),
        Rule(
            "!has(self.promote) || has(self.model)",
            "promote needs spec.model: the ModelVersion is registered under model.name",
            _promote,
            ".promote",
        ),
        Rule(
            "!has(self.evaluation) || !has(self.evaluation.mustBeatChampion) || has(self.model)",
            "mustBeatChampion needs spec.model: the champion is read from model.name",
            _champion,
            ".evaluation.mustBeatChampion",
        ),
    )

    image: schema.ImageRef | None = pydantic.Field(
        default=None,
        description="Container image; default: the runtime image from the operator's config.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    entrypoint: str | None = pydantic.Field(
        default=None,
        pattern=schema.ENTRYPOINT_PATTERN,
        max_length=512,
        description="User training function as module.path:function.",
    )
    command: list[str] | None = pydantic.Field(default=None, min_length=1, max_length=64)
    args: list[str] | None = pydantic.Field(default=None, max_length=256)
    env: list[kubetypes.EnvVar] | None = pydantic.Field(default=None, max_length=128)
    code: CodeSource | None = pydantic.Field(
        default=None,
        description="Code snapshot to run (toque code push); resolved to its digest at start.",
    )
    datasets: Annotated[list[DatasetInput], schema.checked(UNIQUE_ALIASES)] | None = pydantic.Field(
        default=None, max_length=32
    )
    params: dict[str, Any] | None = common.passthrough(
        "Hyper-parameters passed to the user's function and logged to MLflow."
    )
    resources: common.ComputeResources | None = None
    node_selector: kubetypes.NodeSelectorMap | None = None
    tolerations: list[kubetypes.Toleration] | None = pydantic.Field(default=None, max_length=64)
    affinity: kubetypes.AffinityDict | None = pydantic.Field(
        default=None, description="Pod affinity, as core/v1.Affinity."
    )
    priority_class_name: schema.DnsSubdomain | None = None
    service_account_name: schema.DnsSubdomain | None = None
    pod_metadata: common.PodMetadata | None = None
    backoff_limit: int | None = pydantic.Field(
        default=None, ge=0, le=100, description="Retries before the run fails (default 2)."
    )
    active_deadline_seconds: int | None = pydantic.Field(
        default=None, ge=1, description="Wall-clock limit of the whole run, retries included."
    )
    ttl_seconds_after_finished: int | None = pydantic.Field(
        default=None, ge=0, description="Delete the Job (not this resource) after it finishes."
    )
    suspend: bool | None = pydantic.Field(
        default=None, description="Create the Job suspended, or suspend a running one."
    )
    experiment: str | None = pydantic.Field(default=None, min_length=1, max_length=250)
    model: ModelSpec | None = None
    evaluation: EvaluationGate | None = None
    promote: PromoteTemplate | None = pydantic.Field(
        default=None, description="ModelVersion created when the gate passes; needs model."
    )


class DatasetDigest(schema.KubeModel):
    """A dataset ref and the digest it resolved to."""

    ref: str
    digest: str


class GateResult(schema.KubeModel):
    """Outcome of one evaluation rule."""

    rule: str
    passed: bool
    message: str = ""


class GateStatus(schema.KubeModel):
    """Outcome of the evaluation gate."""

    passed: bool
    results: list[GateResult] = pydantic.Field(default_factory=list)


class TrainingJobStatus(schema.KubeModel):
    """Observed state of the run, written only by the operator."""

    phase: Phase | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[cond.Condition] = pydantic.Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    job_name: str | None = None
    attempts: int | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    model_digest: str | None = None
    metrics: dict[str, float] | None = None
    datasets: list[DatasetDigest] | None = None
    code_revision: str | None = None
    image_digest: str | None = pydantic.Field(
        default=None,
        description="The trainer image the run ran, pinned: <repository>@sha256:<64 hex>, from "
        "the pod's containerStatuses[].imageID (unset when the runtime reports no registry "
        "digest); toque reproduce runs it again.",
    )
    gate: GateStatus | None = None
    model_version: str | None = None


class TrainingJob(schema.KubeModel):
    """Schema anchor for the kind (metadata is the API server's)."""

    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None


@dataclasses.dataclass(frozen=True)
class Champion:
    """The model currently holding the must-beat-champion alias, as the registry answers;
    the gate compares against it (no schema: never stored in a resource)."""

    version: str | None  # None: no model holds the alias yet
    metrics: dict[str, float]
