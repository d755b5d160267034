"""The ModelVersion kind: registry promotion, serving and a canary rollout with analysis."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import pydantic

from toque.api import common, kubetypes, schema
from toque.api import conditions as cond
from toque.api import validators as v
from toque.api.schema import Rule

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
ALIAS_PATTERN = v.ALIAS_PATTERN
# Checks Toque runs itself; a user metric of the same name would be taken for the built-in.
BUILTIN_CHECKS = ("error-rate", "p99-latency", "prediction-shift")


def _one_source(s: ModelSource) -> str | None:
    if sum(x is not None for x in (s.training_job, s.run_id, s.model_uri)) != 1:
        return "exactly one of trainingJob, runId or modelUri must be set"
    return None


def _verified(s: ModelSource) -> str | None:
    if s.model_uri is not None and s.model_digest is None and not s.allow_unverified:
        return (
            "modelUri needs modelDigest (sha256:<64 hex>, as the TrainingJob reports it), or "
            "allowUnverified: true to load the model without an integrity check"
        )
    return None


def _no_dot_segments(uri: str) -> str | None:
    if schema.matches(v.DOT_SEGMENT_PATTERN, uri):
        return f"modelUri must not contain '.' or '..' path segments, got {uri!r}"
    return None


IMMUTABLE_SOURCE = Rule(
    "self == oldSelf",
    "source is immutable: it is what was registered; create a new ModelVersion instead",
    None,
)
IMMUTABLE_MODEL = Rule(
    "self == oldSelf",
    "model is immutable: the version is registered under it; create a new ModelVersion instead",
    None,
)


class ModelSource(schema.SpecModel):
    """Where the model comes from: exactly one of the three. Immutable."""

    cel_rules = (
        Rule(
            "[has(self.trainingJob), has(self.runId), has(self.modelUri)].filter(x, x).size() == 1",
            "exactly one of trainingJob, runId or modelUri must be set",
            _one_source,
        ),
        Rule(
            "!has(self.modelUri) || has(self.modelDigest) || "
            "(has(self.allowUnverified) && self.allowUnverified)",
            "modelUri needs modelDigest (sha256:<64 hex>, as the TrainingJob reports it), or "
            "allowUnverified: true to load the model without an integrity check",
            _verified,
            ".modelDigest",
        ),
    )

    training_job: schema.DnsSubdomain | None = None
    run_id: str | None = pydantic.Field(default=None, pattern=v.RUN_ID_PATTERN)
    model_uri: (
        Annotated[
            str,
            pydantic.Field(pattern=v.MODEL_URI_PATTERN, max_length=2048),
            schema.checked(
                Rule(
                    f"!self.matches({schema.cel_string(v.DOT_SEGMENT_PATTERN)})",
                    "modelUri must not contain '.' or '..' path segments",
                    _no_dot_segments,
                    message_expression=(
                        "\"modelUri must not contain '.' or '..' path segments, got '\" + self"
                        ' + "\'"'
                    ),
                )
            ),
        ]
        | None
    ) = pydantic.Field(
        default=None,
        description="An MLflow model URI: models:/<name>/<version>, models:/<name>@<alias>, "
        "runs:/<run id>/<path>, s3://<bucket>/<key> or mlflow-artifacts:/<path>.",
    )
    model_digest: str | None = pydantic.Field(
        default=None,
        pattern=v.DIGEST_PATTERN,
        description="Expected digest of the model files (sha256:<64 hex>); the server refuses "
        "others. Taken from the TrainingJob or the run's toque.model_digest tag when unset. "
        "Required with modelUri unless allowUnverified.",
    )
    allow_unverified: bool = pydantic.Field(
        default=False,
        description="Serve a modelUri without modelDigest: the model files are downloaded and "
        "unpickled without any integrity check, so whoever can write them runs code in the "
        "serving pods.",
    )


class BatchingSpec(schema.SpecModel):
    """Micro-batching: concurrent requests' rows predicted in one call.

    Only for models whose answers do not depend on the batch (the server checks at load;
    linear models, whose BLAS sums do, are predicted one request at a time).
    """

    max_latency_ms: float = pydantic.Field(
        default=2.0,
        ge=0,
        le=1000,
        description="The longest a request waits in the batch queue while the model is busy, "
        "in milliseconds.",
    )
    max_rows: int = pydantic.Field(
        default=1024,
        ge=1,
        le=65536,
        description="Rows one model call may take from several requests; 1 turns "
        "micro-batching off.",
    )


class ServingSpec(schema.SpecModel):
    """How the model server runs."""

    replicas: int = pydantic.Field(default=1, ge=1, le=100)
    image: schema.ImageRef | None = None
    port: int = pydantic.Field(default=8080, ge=1024, le=65535)
    resources: common.ComputeResources | None = None
    env: list[kubetypes.EnvVar] | None = pydantic.Field(default=None, max_length=64)
    node_selector: kubetypes.NodeSelectorMap | None = None
    tolerations: list[kubetypes.Toleration] | None = pydantic.Field(default=None, max_length=64)
    sample_rate: schema.Fraction | None = pydantic.Field(
        default=None, description="Share of requests whose rows are logged to the data store."
    )
    batching: BatchingSpec | None = pydantic.Field(
        default=None,
        description="Micro-batching; the server's defaults (1024 rows, 2 ms) if unset.",
    )


class PauseStep(schema.SpecModel):
    """Hold the rollout for ``duration`` (above zero), or until promoted by hand when empty."""

    duration: schema.PositiveDuration | None = None


def _one_action(s: RolloutStep) -> str | None:
    if (s.set_weight is None) == (s.pause is None):
        return "each step sets exactly one of setWeight or pause"
    return None


class RolloutStep(schema.SpecModel):
    """One step: exactly one of setWeight or pause."""

    cel_rules = (
        Rule(
            "has(self.setWeight) != has(self.pause)",
            "each step sets exactly one of setWeight or pause",
            _one_action,
        ),
    )

    set_weight: schema.Percent | None = pydantic.Field(
        default=None, description="Share of traffic (percent) for the canary."
    )
    pause: PauseStep | None = None


class PrometheusMetric(schema.SpecModel):
    """A user PromQL query whose result must satisfy ``successCondition``."""

    name: str = pydantic.Field(
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        max_length=63,
        description="Name of the check; not one of the built-ins "
        + ", ".join(BUILTIN_CHECKS)
        + ".",
    )
    query: str = pydantic.Field(min_length=1, max_length=4096)
    success_condition: str = pydantic.Field(
        pattern=v.SUCCESS_CONDITION_PATTERN,
        max_length=256,
        description="Comparison of the scalar result with a number: result <op> <number>, "
        "op one of <, <=, >, >=, ==, !=, e.g. 'result < 0.05' or 'result >= 1e-3'.",
    )
    failure_limit: int | None = pydantic.Field(default=None, ge=0)


class BuiltinChecks(schema.SpecModel):
    """Checks Toque runs on every canary without a query."""

    max_error_rate: schema.Fraction | None = pydantic.Field(
        default=0.05,
        description="Largest share of canary requests answered 5xx. Judged over at least 20 "
        "requests; before that it fails only once the errors exceed the limit over 20.",
    )
    max_p99_latency_ms: float | None = pydantic.Field(
        default=None,
        gt=0,
        description="Largest 99th percentile of the canary's request latency, in ms. "
        "Judged over at least 20 requests.",
    )
    max_prediction_shift: schema.Fraction | None = pydantic.Field(
        default=None,
        description="Jensen-Shannon distance (0 to 1) of canary vs stable predictions.",
    )


def _not_builtin(metrics: list[PrometheusMetric]) -> str | None:
    for m in metrics:
        if m.name in BUILTIN_CHECKS:
            return f"metric name {m.name!r} is a built-in check; choose another name"
    return None


_BUILTIN_LIST = "[" + ", ".join(f"'{b}'" for b in BUILTIN_CHECKS) + "]"
NOT_BUILTIN = Rule(
    f"!self.exists(m, m.name in {_BUILTIN_LIST})",
    "metric names must differ from the built-in checks " + ", ".join(BUILTIN_CHECKS),
    _not_builtin,
)


class Analysis(schema.SpecModel):
    """Analysis run at every step of the canary."""

    interval: schema.PositiveDuration = "30s"
    failure_limit: int = pydantic.Field(default=0, ge=0, le=100)
    builtins: BuiltinChecks | None = None
    metrics: (
        Annotated[list[PrometheusMetric], schema.ListMap("name"), schema.checked(NOT_BUILTIN)]
        | None
    ) = pydantic.Field(default=None, max_length=32)


class HTTPRouteRef(schema.SpecModel):
    """Gateway API parent the HTTPRoute attaches to."""

    name: schema.DnsSubdomain
    namespace: schema.DnsLabel | None = None
    section_name: schema.DnsSubdomain | None = None


def _traffic(t: TrafficSpec) -> str | None:
    if t.mode == "gatewayAPI" and not t.parent_refs:
        return "gatewayAPI traffic needs at least one parentRef"
    if t.mode != "gatewayAPI" and t.parent_refs:
        return "parentRefs are only used with mode gatewayAPI"
    return None


class TrafficSpec(schema.SpecModel):
    """How the canary weight is enforced."""

    cel_rules = (
        Rule(
            "self.mode != 'gatewayAPI' || (has(self.parentRefs) && size(self.parentRefs) > 0)",
            "gatewayAPI traffic needs at least one parentRef",
            lambda t: _traffic(t) if t.mode == "gatewayAPI" else None,
            ".parentRefs",
        ),
        Rule(
            "self.mode == 'gatewayAPI' || !has(self.parentRefs) || size(self.parentRefs) == 0",
            "parentRefs are only used with mode gatewayAPI",
            lambda t: _traffic(t) if t.mode != "gatewayAPI" else None,
            ".parentRefs",
        ),
    )

    mode: Literal["replicas", "gatewayAPI"] = "replicas"
    parent_refs: list[HTTPRouteRef] | None = pydantic.Field(default=None, max_length=16)


class RolloutSpec(schema.SpecModel):
    """Canary steps and analysis; the first version of a model skips the canary."""

    steps: list[RolloutStep] | None = pydantic.Field(default=None, max_length=64)
    analysis: Analysis | None = None
    traffic: TrafficSpec | None = None


class ModelVersionSpec(schema.SpecModel):
    """Desired registration and serving of one model version."""

    model: Annotated[schema.ModelName, schema.checked(IMMUTABLE_MODEL)] = pydantic.Field(
        description="Registered model name; immutable."
    )
    source: Annotated[ModelSource, schema.checked(IMMUTABLE_SOURCE)]
    alias: schema.ModelAlias | None = pydantic.Field(
        default=None, description="Alias set on promotion."
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
