"""The JSON the trainer writes to its termination message; the operator reads it back.

Kubernetes keeps at most 4096 bytes of a termination message, so the result is compact and,
when the metrics do not fit, keeps the metrics the evaluation gate needs and says it dropped
the rest (they stay in MLflow).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

LIMIT = 4000


class DatasetUse(pydantic.BaseModel):
    ref: str
    digest: str


class TrainResult(pydantic.BaseModel):
    """Outcome of a successful run."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    run_id: str = pydantic.Field(alias="runId")
    experiment_id: str = pydantic.Field(default="", alias="experimentId")
    model_uri: str | None = pydantic.Field(default=None, alias="modelUri")
    model_digest: str | None = pydantic.Field(default=None, alias="modelDigest")
    metrics: dict[str, float] = pydantic.Field(default_factory=dict)
    metrics_truncated: bool = pydantic.Field(default=False, alias="metricsTruncated")
    datasets: list[DatasetUse] = pydantic.Field(default_factory=list)
    code_revision: str | None = pydantic.Field(default=None, alias="codeRevision")


def encode(result: TrainResult, keep: set[str] | None = None) -> str:
    """Compact JSON under ``LIMIT`` bytes; drops metrics outside ``keep`` when needed."""
    text = result.model_dump_json(by_alias=True, exclude_none=True)
    if len(text) <= LIMIT:
        return text
    wanted = {k: v for k, v in result.metrics.items() if keep and k in keep}
    trimmed = result.model_copy(update={"metrics": wanted, "metrics_truncated": True})
    text = trimmed.model_dump_json(by_alias=True, exclude_none=True)
    if len(text) <= LIMIT:
        return text
    bare = trimmed.model_copy(update={"metrics": {}, "datasets": []})
    return bare.model_dump_json(by_alias=True, exclude_none=True)


def decode(message: str) -> TrainResult | None:
    """The result in a termination message, or None when it is not one (e.g. a log tail)."""
    try:
        data: Any = json.loads(message)
        return TrainResult.model_validate(data)
    except (ValueError, pydantic.ValidationError):
        return None


def failure(kind: str, message: str) -> str:
    """A failure message: a short tagged line the operator shows as is."""
    return f"{kind}: {message}"[-LIMIT:]
