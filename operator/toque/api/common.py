"""Types shared by several kinds: compute resources and pod metadata (the Kubernetes core
types they build on are in ``kubetypes``)."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic

from toque.api import constants, kubetypes, schema

# The names the builders and the operator import from here.
Toleration = kubetypes.Toleration
EnvVar = kubetypes.EnvVar
EnvVarSource = kubetypes.EnvVarSource
SecretKeySelector = kubetypes.KeySelector


class ComputeResources(schema.SpecModel):
    """CPU, memory and GPUs for one pod; GPUs go to requests and limits alike."""

    cpu: kubetypes.PositiveQuantity | None = pydantic.Field(
        default=None,
        description="CPU request: a quantity above zero such as 500m, 0.5 or 2.",
    )
    memory: kubetypes.PositiveQuantity | None = pydantic.Field(
        default=None,
        description="Memory request and limit: a quantity above zero such as 512Mi, 4Gi or 1e9.",
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
        description="Extended resource name of the GPU device plugin, e.g. nvidia.com/gpu.",
    )


# What the operator writes on the pods and ModelVersions it creates, over the user's values.
OWNED_LABELS = (constants.LABEL_TRAININGJOB, constants.LABEL_TRAININGJOB_UID)
OWNED_POD_ANNOTATIONS = (f"{constants.GROUP}/trainingjob-name",)
OWNED_MODELVERSION_ANNOTATIONS = (f"{constants.GROUP}/mlflow-run-id",)
UserLabels = Annotated[kubetypes.LabelMap, kubetypes.reserved_keys_rule("label", OWNED_LABELS)]
PodAnnotations = Annotated[
    kubetypes.AnnotationMap,
    kubetypes.reserved_keys_rule("annotation", OWNED_POD_ANNOTATIONS),
]
ModelVersionAnnotations = Annotated[
    kubetypes.AnnotationMap,
    kubetypes.reserved_keys_rule("annotation", OWNED_MODELVERSION_ANNOTATIONS),
]


class PodMetadata(schema.SpecModel):
    """Extra labels and annotations for the pods Toque creates (except the ones the operator
    sets itself)."""

    labels: UserLabels | None = None
    annotations: PodAnnotations | None = None


def passthrough(description: str) -> Any:
    """A field kept verbatim (validated by the API server when the child object is created)."""
    return pydantic.Field(
        default=None,
        description=description,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
