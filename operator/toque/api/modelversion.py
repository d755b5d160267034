"""The ModelVersion kind: registry promotion, serving and a canary rollout with analysis."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pydantic

from toque.api import common, schema
from toque.api import conditions as cond

Phase = Literal[
    "Pending",
    "Registering",
    "Progressing",
    "Paused",
    "Promoted",
    "Aborted",
    "RolledBack",
    "Failed",
    "Superseded",
]
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"


class ModelSource(schema.KubeModel):
    """Where the model comes from: exactly one of the three."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "[has(self.trainingJob), has(self.runId), has(self.modelUri)]"
                ".filter(x, x).size() == 1",
                "exactly one of trainingJob, runId or modelUri must be set",
            )
        )
    )

    training_job: str | None = pydantic.Field(
        default=None, pattern=schema.DNS_SUBDOMAIN_PATTERN, max_length=253
    )
    run_id: str | None = pydantic.Field(default=None, pattern=r"^[a-f0-9]{32}$")
    model_uri: str | None = pydantic.Field(
        default=None,
        pattern=r"^(models|runs|s3|mlflow-artifacts)://?\S+$",
        max_length=2048,
    )
    model_digest: str | None = pydantic.Field(
        default=None,
        pattern=r"^sha256:[a-f0-9]{64}$",
        description="Expected digest of the model files; the server refuses others. Taken "
        "from the TrainingJob or the run's toque.model_digest tag when unset.",
    )


class ServingSpec(schema.KubeModel):
    """How the model server runs."""

    replicas: int = pydantic.Field(default=1, ge=1, le=100)
    image: str | None = pydantic.Field(default=None, min_length=1, max_length=512)
    port: int = pydantic.Field(default=8080, ge=1024, le=65535)
    resources: common.ComputeResources | None = None
    env: list[common.EnvVar] | None = pydantic.Field(default=None, max_length=64)
    node_selector: schema.StringMap | None = None
    tolerations: list[common.Toleration] | None = pydantic.Field(default=None, max_length=64)
    sample_rate: schema.Fraction | None = pydantic.Field(
        default=None, description="Share of requests whose rows are logged to the data store."
    )


class PauseStep(schema.KubeModel):
    """Hold the rollout for ``duration``, or until promoted by hand when empty."""

    duration: schema.Duration | None = None


class RolloutStep(schema.KubeModel):
    """One step: exactly one of setWeight or pause."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "has(self.setWeight) != has(self.pause)",
                "each step sets exactly one of setWeight or pause",
            )
        )
    )

    set_weight: schema.Percent | None = pydantic.Field(
        default=None, description="Share of traffic (percent) for the canary."
    )
    pause: PauseStep | None = None


class PrometheusMetric(schema.KubeModel):
    """A user PromQL query whose result must satisfy ``successCondition``."""

    name: str = pydantic.Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    query: str = pydantic.Field(min_length=1, max_length=4096)
    success_condition: str = pydantic.Field(
        pattern=r"^result\s*(<|<=|>|>=|==|!=)\s*-?[0-9.]+(e-?[0-9]+)?$",
        description="Comparison on the scalar result, e.g. 'result < 0.05'.",
    )
    failure_limit: int | None = pydantic.Field(default=None, ge=0)


class BuiltinChecks(schema.KubeModel):
    """Checks Toque runs on every canary without a query."""

    max_error_rate: schema.Fraction | None = pydantic.Field(default=0.05)
    max_p99_latency_ms: float | None = pydantic.Field(default=None, gt=0)
    max_prediction_shift: schema.Fraction | None = pydantic.Field(
        default=None, description="Jensen-Shannon distance of canary vs stable predictions."
    )


class Analysis(schema.KubeModel):
    """Analysis run at every step of the canary."""

    interval: schema.Duration = "30s"
    failure_limit: int = pydantic.Field(default=0, ge=0, le=100)
    builtins: BuiltinChecks | None = None
    metrics: list[PrometheusMetric] | None = pydantic.Field(
        default=None,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class HTTPRouteRef(schema.KubeModel):
    """Gateway API parent the HTTPRoute attaches to."""

    name: str = pydantic.Field(pattern=schema.DNS_SUBDOMAIN_PATTERN, max_length=253)
    namespace: str | None = pydantic.Field(default=None, pattern=schema.DNS_LABEL_PATTERN)
    section_name: str | None = pydantic.Field(default=None, max_length=253)


class TrafficSpec(schema.KubeModel):
    """How the canary weight is enforced."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "self.mode != 'gatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",
                "gatewayAPI traffic needs at least one parentRef",
                ".parentRefs",
            )
        )
    )

    mode: Literal["replicas", "gatewayAPI"] = "replicas"
    parent_refs: list[HTTPRouteRef] | None = pydantic.Field(default=None, max_length=16)


class RolloutSpec(schema.KubeModel):
    """Canary steps and analysis; the first version of a model skips the canary."""

    steps: list[RolloutStep] | None = pydantic.Field(default=None, max_length=64)
    analysis: Analysis | None = None
    traffic: TrafficSpec | None = None


class ModelVersionSpec(schema.KubeModel):
    """Desired registration and serving of one model version."""

    model: schema.ModelName
    source: ModelSource
    alias: str | None = pydantic.Field(
        default=None, pattern=ALIAS_PATTERN, description="Alias set on promotion."
    )
    serving: ServingSpec | None = None
    rollout: RolloutSpec | None = None


class RegistryStatus(schema.KubeModel):
    """Where the version lives in the MLflow registry."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None


class AnalysisRun(schema.KubeModel):
    """Result of one check at one step; passed is None when inconclusive (no data)."""

    step: int
    check: str
    passed: bool | None = None
    value: float | None = None
    message: str = ""
    time: dt.datetime


class ModelVersionStatus(schema.KubeModel):
    """Observed rollout state, written only by the operator."""

    phase: Phase | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[cond.Condition] = pydantic.Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    registry: RegistryStatus | None = None
    model_uri: str | None = pydantic.Field(default=None, description="What the servers load.")
    model_digest: str | None = None
    run_id: str | None = None
    current_step: int | None = None
    step_started_at: dt.datetime | None = None
    canary_weight: int | None = pydantic.Field(default=None, description="Weight asked for.")
    actual_canary_weight: int | None = pydantic.Field(
        default=None, description="Share of ready serving pods that are canary pods (percent)."
    )
    stable_version: str | None = pydantic.Field(
        default=None, description="ModelVersion that serves the rest of the traffic."
    )
    previous: str | None = pydantic.Field(
        default=None, description="ModelVersion this one replaced; a rollback returns to it."
    )
    promoted_at: dt.datetime | None = None
    steps_hash: str | None = None
    last_analysis_at: dt.datetime | None = None
    failure_counts: dict[str, int] | None = pydantic.Field(
        default=None, description="Failed measurements per check in this rollout."
    )
    analysis_runs: list[AnalysisRun] | None = pydantic.Field(
        default=None, max_length=200, description="The most recent measurements."
    )
    last_action: str | None = pydantic.Field(
        default=None, description="The last toque.dev/action annotation value handled."
    )


class ModelVersion(schema.KubeModel):
    """Schema anchor for the kind."""

    spec: ModelVersionSpec
    status: ModelVersionStatus | None = None
