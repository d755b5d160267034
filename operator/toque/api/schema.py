"""Building blocks for the CRD models: the base class, reusable constrained types, CEL rules.

Every model of a custom resource derives from ``KubeModel`` so that JSON field names are the
Kubernetes camelCase ones, unknown fields are refused, and the generated schema stays
structural. Called by the per-kind modules in this package.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pydantic
from pydantic import alias_generators

# RE2 (Go's regexp, used by the API server) has no look-around, so "positive" checks on
# quantities live in CEL rules, not in these patterns.
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i?|[mkMGTPE]|n|u)?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATASET_NAME = r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?"
DATASET_REF_PATTERN = (
    rf"^{DATASET_NAME}(@sha256:[a-f0-9]{{64}}|:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?$"
)
PY_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT_PATTERN = rf"^{PY_IDENT}(\.{PY_IDENT})*:{PY_IDENT}(\.{PY_IDENT})*$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
CRON_PATTERN = r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry; ``field_path`` makes errors name the field."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def positive_quantity_rule(field: str) -> str:
    """CEL: an int-or-string quantity field, when present, is a valid quantity above zero."""
    value = f"self.{field}"
    return (
        f"!has({value}) || (type({value}) == int ? {value} > 0 : "
        f"(isQuantity(string({value})) && quantity(string({value})).isGreaterThan("
        f"quantity('0'))))"
    )


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")
    return value


Quantity = Annotated[
    int | str,
    # The API server checks the quantity syntax and sign through the CEL rule of the field's
    # parent (see positive_quantity_rule); structural schemas allow no typed anyOf here.
    pydantic.WithJsonSchema({"x-kubernetes-int-or-string": True}),
    pydantic.AfterValidator(lambda v: _check_quantity(v)),
]
Duration = Annotated[
    str,
    pydantic.Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration such as 30s, 5m or 1h30m.",
    ),
]
DatasetRef = Annotated[
    str,
    pydantic.Field(
        pattern=DATASET_REF_PATTERN,
        max_length=253,
        description="A dataset version: NAME@sha256:<64 hex>, NAME:TAG, or NAME (tag latest).",
    ),
]
Percent = Annotated[int, pydantic.Field(ge=0, le=100)]
Fraction = Annotated[float, pydantic.Field(ge=0.0, le=1.0)]
DnsLabel = Annotated[str, pydantic.Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
ModelName = Annotated[
    str,
    pydantic.Field(
        pattern=MODEL_NAME_PATTERN, description="Registered model name in the MLflow registry."
    ),
]
StringMap = dict[str, str]


class KubeModel(pydantic.BaseModel):
    """Base of every CRD model: camelCase JSON names, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_kube(self) -> dict[str, Any]:
        """JSON-ready dict with Kubernetes field names and unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules for a model or a field."""
    return {"x-kubernetes-validations": list(entries)}


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a ``Duration`` such as ``1m30s`` (already validated by the CRD pattern)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
