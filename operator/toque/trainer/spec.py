"""The run spec the operator passes to the pod in ``TOQUE_RUN_SPEC`` (JSON)."""

from __future__ import annotations

import json
import os
from typing import Any

import pydantic

from toque.api import trainingjob as tj


class RunSpec(pydantic.BaseModel):
    """What the trainer needs from the TrainingJob spec."""

    model_config = pydantic.ConfigDict(extra="ignore")

    code: tj.CodeSource | None = None
    datasets: list[tj.DatasetInput] = pydantic.Field(default_factory=list)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    experiment: str | None = None
    model: tj.ModelSpec | None = None
    evaluation: tj.EvaluationGate | None = None


class Identity(pydantic.BaseModel):
    """Which TrainingJob this pod runs (lineage tags)."""

    namespace: str = ""
    name: str = ""
    uid: str = ""
    image: str = ""


def from_env(environ: dict[str, str] | None = None) -> tuple[RunSpec, Identity]:
    env = os.environ if environ is None else environ
    raw = env.get("TOQUE_RUN_SPEC", "{}")
    spec = RunSpec.model_validate(json.loads(raw))
    identity = Identity(
        namespace=env.get("TOQUE_TRAININGJOB_NAMESPACE", ""),
        name=env.get("TOQUE_TRAININGJOB_NAME", ""),
        uid=env.get("TOQUE_TRAININGJOB_UID", ""),
        image=env.get("TOQUE_IMAGE", ""),
    )
    return spec, identity
