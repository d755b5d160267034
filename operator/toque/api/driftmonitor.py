"""The DriftMonitor kind: drift of live traffic against a reference, and retraining."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pydantic

from toque.api import conditions as cond
from toque.api import schema

Method = Literal["psi", "ks", "chi2", "jsd", "wasserstein"]


class Reference(schema.KubeModel):
    """Reference distribution: a dataset version, or the live version's training data."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "has(self.dataset) != (has(self.trainingData) && self.trainingData)",
                "set exactly one of dataset or trainingData: true",
            )
        )
    )

    dataset: schema.DatasetRef | None = None
    training_data: bool | None = None


class FeatureRule(schema.KubeModel):
    """How one feature is tested."""

    name: str = pydantic.Field(min_length=1, max_length=250)
    type: Literal["numeric", "categorical"] | None = None
    method: Method | None = None
    threshold: float | None = pydantic.Field(default=None, gt=0.0)


class DatasetRule(schema.KubeModel):
    """The dataset drifts when at least ``driftShare`` of its features drift."""

    drift_share: schema.Fraction = 0.5


class RetrainSpec(schema.KubeModel):
    """What to do on drift."""

    enabled: bool = True
    data_tag: str = pydantic.Field(default="latest", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    cooldown: schema.Duration = "1h"


class DriftMonitorSpec(schema.KubeModel):
    """Desired drift monitoring of one model's live traffic."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "self.mode != 'scheduled' || has(self.schedule)",
                "scheduled mode needs a schedule",
                ".schedule",
            ),
            schema.cel(
                "self.mode != 'continuous' || !has(self.schedule)",
                "schedule is only valid in scheduled mode",
                ".schedule",
            ),
        )
    )

    model: schema.ModelName
    reference: Reference
    features: list[FeatureRule] | None = pydantic.Field(
        default=None,
        max_length=1024,
        description="Per-feature rules; empty means every column of the reference schema.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    default_method: Method | None = None
    dataset_rule: DatasetRule | None = None
    mode: Literal["continuous", "scheduled"] = "continuous"
    interval: schema.Duration = "5m"
    schedule: str | None = pydantic.Field(default=None, pattern=schema.CRON_PATTERN)
    window: schema.Duration = "1h"
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
