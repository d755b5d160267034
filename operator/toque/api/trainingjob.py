"""The TrainingJob kind: one training run on a CPU or GPU node, tracked and gated."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pydantic

from toque.api import common, schema
from toque.api import conditions as cond
from toque.api import modelversion as mv

Phase = Literal["Pending", "Suspended", "Running", "Succeeded", "Failed"]
PHASES: tuple[str, ...] = ("Pending", "Suspended", "Running", "Succeeded", "Failed")


class DatasetInput(schema.KubeModel):
    """A dataset version the run reads; tags are resolved to digests when the run starts."""

    ref: schema.DatasetRef
    alias: str | None = pydantic.Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=63,
        description="Name the user's code sees the dataset under (default: dataset name).",
    )


class ModelSpec(schema.KubeModel):
    """The model the run produces and logs to MLflow."""

    name: schema.ModelName
    flavor: Literal["sklearn", "pytorch", "pyfunc"] = pydantic.Field(
        default="sklearn", description="MLflow flavour the model is logged with."
    )


class MetricThreshold(schema.KubeModel):
    """A metric must compare to a value, e.g. accuracy >= 0.9."""

    metric: str = pydantic.Field(min_length=1, max_length=250)
    op: Literal[">=", ">", "<=", "<"] = pydantic.Field(description="Comparison operator.")
    value: float


class ChampionRule(schema.KubeModel):
    """The new model must beat the model holding ``alias`` in the registry."""

    metric: str = pydantic.Field(min_length=1, max_length=250)
    direction: Literal["maximize", "minimize"] = "maximize"
    min_delta: float = pydantic.Field(default=0.0, ge=0.0, description="Required margin.")
    alias: str = pydantic.Field(default="champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


class GapRule(schema.KubeModel):
    """Overfitting guard: |train metric - validation metric| must stay under ``max``."""

    metric: str = pydantic.Field(min_length=1, max_length=250)
    max: float = pydantic.Field(ge=0.0)


class FairnessRule(schema.KubeModel):
    """The metric's spread across groups of ``groupColumn`` must stay under ``maxDisparity``."""

    group_column: str = pydantic.Field(min_length=1, max_length=250)
    metric: str = pydantic.Field(min_length=1, max_length=250)
    max_disparity: schema.Fraction


class EvaluationGate(schema.KubeModel):
    """Rules a finished run must pass before its model is promoted."""

    thresholds: list[MetricThreshold] | None = pydantic.Field(default=None, max_length=32)
    must_beat_champion: ChampionRule | None = None
    max_train_validation_gap: GapRule | None = None
    fairness: FairnessRule | None = None


class PromoteTemplate(schema.KubeModel):
    """The ModelVersion created when the gate passes (model and source come from the run)."""

    labels: schema.StringMap | None = None
    annotations: schema.StringMap | None = None
    alias: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
    serving: mv.ServingSpec | None = None
    rollout: mv.RolloutSpec | None = None


class TrainingJobSpec(schema.KubeModel):
    """Desired training run."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "has(self.entrypoint) != has(self.command)",
                "exactly one of entrypoint or command must be set",
            ),
            schema.cel(
                "!has(self.args) || has(self.command)",
                "args require command",
                ".args",
            ),
        )
    )

    image: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=512,
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
    env: list[common.EnvVar] | None = pydantic.Field(default=None, max_length=128)
    datasets: list[DatasetInput] | None = pydantic.Field(default=None, max_length=32)
    params: dict[str, Any] | None = common.passthrough(
        "Hyper-parameters passed to the user's function and logged to MLflow."
    )
    resources: common.ComputeResources | None = None
    node_selector: schema.StringMap | None = None
    tolerations: list[common.Toleration] | None = pydantic.Field(default=None, max_length=64)
    affinity: dict[str, Any] | None = common.passthrough("Pod affinity, as core/v1.Affinity.")
    priority_class_name: str | None = pydantic.Field(
        default=None, pattern=schema.DNS_SUBDOMAIN_PATTERN, max_length=253
    )
    service_account_name: str | None = pydantic.Field(
        default=None, pattern=schema.DNS_SUBDOMAIN_PATTERN, max_length=253
    )
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
    promote: PromoteTemplate | None = None


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
    gate: GateStatus | None = None
    model_version: str | None = None


class TrainingJob(schema.KubeModel):
    """Schema anchor for the kind (metadata is the API server's)."""

    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
