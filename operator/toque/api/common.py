"""Types shared by several kinds: compute resources, scheduling, env vars, pod metadata."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from toque.api import constants, schema


class ComputeResources(schema.KubeModel):
    """CPU, memory and GPUs for one pod; GPUs go to requests and limits alike."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                schema.positive_quantity_rule("cpu"),
                "cpu must be a quantity greater than zero",
                ".cpu",
            ),
            schema.cel(
                schema.positive_quantity_rule("memory"),
                "memory must be a quantity greater than zero",
                ".memory",
            ),
        )
    )

    cpu: schema.Quantity | None = pydantic.Field(
        default=None, description="CPU request, e.g. 500m or 2. Must be above zero."
    )
    memory: schema.Quantity | None = pydantic.Field(
        default=None,
        description="Memory request and limit, e.g. 512Mi or 4Gi. Must be above zero.",
    )
    gpu: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=64,
        description="Number of GPUs; set as request and limit of gpuResourceName.",
    )
    gpu_resource_name: str = pydantic.Field(
        default=constants.DEFAULT_GPU_RESOURCE,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)"
        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=253,
        description="Extended resource name of the GPU device plugin.",
    )


class Toleration(schema.KubeModel):
    """A pod toleration, as ``core/v1.Toleration``."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                "value must be empty when operator is Exists",
                ".value",
            ),
            schema.cel(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds is only valid with effect NoExecute",
                ".tolerationSeconds",
            ),
        )
    )

    key: str | None = pydantic.Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = pydantic.Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = pydantic.Field(default=None, ge=0)


class SecretKeySelector(schema.KubeModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: str = pydantic.Field(pattern=schema.DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = pydantic.Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    optional: bool | None = None


class EnvVarSource(schema.KubeModel):
    """Where an env var's value comes from; credentials only through these refs."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                "exactly one of secretKeyRef or configMapKeyRef must be set",
            )
        )
    )

    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: SecretKeySelector | None = None


class EnvVar(schema.KubeModel):
    """An environment variable for the training container."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=schema.rules(
            schema.cel(
                "!(has(self.value) && has(self.valueFrom))",
                "value and valueFrom are mutually exclusive",
            )
        )
    )

    name: str = pydantic.Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=253)
    value: str | None = None
    value_from: EnvVarSource | None = None


class PodMetadata(schema.KubeModel):
    """Extra labels and annotations for the pods Toque creates."""

    labels: schema.StringMap | None = None
    annotations: schema.StringMap | None = None


def passthrough(description: str) -> Any:
    """A field kept verbatim (validated by the API server when the child object is created)."""
    return pydantic.Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
