"""Building blocks for the CRD models: the base classes, CEL rules, reusable constrained types.

Every model of a custom resource derives from ``KubeModel`` so that JSON field names are the
Kubernetes camelCase ones, unknown fields are refused, and the generated schema stays
structural. Spec-side models derive from ``SpecModel``, which is also strict: an integer
field refuses ``"3"`` and a string field refuses ``3``, as the API server does.

A CEL rule is declared once, as a ``Rule`` that carries the CEL expression for the CRD and
the equivalent Python check for pydantic, so that ``kubectl apply`` and the operator refuse
the same input. Called by the per-kind modules in this package.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self

import pydantic
import pydantic_core
from pydantic import alias_generators
from pydantic_core import core_schema

from toque.api import validators as v

# Re-exported for the per-kind modules (and a stable import path for the operator).
DNS_LABEL_PATTERN = v.DNS_LABEL_PATTERN
DNS_SUBDOMAIN_PATTERN = v.DNS_SUBDOMAIN_PATTERN
DATASET_NAME = r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?"
DATASET_REF_PATTERN = (
    rf"^{DATASET_NAME}(@sha256:[a-f0-9]{{64}}|:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?$"
)
PY_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT_PATTERN = rf"^{PY_IDENT}(\.{PY_IDENT})*:{PY_IDENT}(\.{PY_IDENT})*$"
duration_seconds = v.duration_seconds

Check = Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry and its Python twin.

    ``check`` gets the validated value (a model, a list, a string...) and returns None when
    it passes, or the message. ``check=None`` marks a transition rule (``oldSelf``), which
    only the API server can evaluate.
    """

    cel: str
    message: str
    check: Check | None
    field_path: str | None = None
    message_expression: str | None = None

    def entry(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def run(self, value: Any) -> None:
        if self.check is None:
            return
        problem = self.check(value)
        if problem:
            # Errors of object-level rules sit on the object; name the field as fieldPath does.
            field = (self.field_path or "").lstrip(".")
            raise ValueError(f"{field}: {problem}" if field else problem)


def cel_string(text: str) -> str:
    """A CEL raw string literal of ``text`` (a regular expression, typically)."""
    quote = "'" if "'" not in text else '"'
    if quote in text:
        raise ValueError(f"cannot quote {text!r} for CEL")
    return f"r{quote}{text}{quote}"


def rules(*entries: Rule) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules."""
    return {"x-kubernetes-validations": [r.entry() for r in entries]}


@dataclasses.dataclass(frozen=True)
class Checked:
    """Annotated metadata: rules on a field's own schema, checked by pydantic as well.

    Rules from several ``Checked`` (a type's and a field's) add up instead of replacing
    each other, as ``json_schema_extra`` dicts would.
    """

    entries: tuple[Rule, ...]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        for rule in self.entries:
            if rule.check is not None:
                schema = core_schema.no_info_after_validator_function(_runner(rule), schema)
        return schema

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema: dict[str, Any] = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        target.setdefault("x-kubernetes-validations", [])
        target["x-kubernetes-validations"] += [r.entry() for r in self.entries]
        return json_schema


def checked(*entries: Rule) -> Checked:
    """``Annotated[T, checked(rule, ...)]``: rules on the value of a field itself."""
    return Checked(entries)


@dataclasses.dataclass(frozen=True)
class ListMap:
    """Annotated metadata: a list of objects keyed by ``key`` (``x-kubernetes-list-type:
    map``), whose duplicate keys pydantic refuses as the API server does."""

    key: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def unique(items: list[Any]) -> list[Any]:
            seen: set[Any] = set()
            for item in items:
                value = getattr(item, self.key)
                if value in seen:
                    raise ValueError(f"duplicate entry with {self.key} {value!r}")
                seen.add(value)
            return items

        return core_schema.no_info_after_validator_function(unique, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema: dict[str, Any] = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        target["x-kubernetes-list-type"] = "map"
        target["x-kubernetes-list-map-keys"] = [self.key]
        return json_schema


def _runner(rule: Rule) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        rule.run(value)
        return value

    return run


class KubeModel(pydantic.BaseModel):
    """Base of every CRD model: camelCase JSON names, unknown fields refused.

    ``cel_rules`` of a class are written into its schema and checked after validation.
    """

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
    )
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    def to_kube(self) -> dict[str, Any]:
        """JSON-ready dict with Kubernetes field names and unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @pydantic.model_validator(mode="after")
    def _check_cel_rules(self) -> Self:
        for rule in type(self).cel_rules:
            rule.run(self)
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: Any, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema: dict[str, Any] = handler(core_schema)
        own = cls.__dict__.get("cel_rules") or ()
        if own:
            target = handler.resolve_ref_schema(json_schema)
            target.setdefault("x-kubernetes-validations", [])
            target["x-kubernetes-validations"] += [r.entry() for r in own]
        return json_schema


class SpecModel(KubeModel):
    """Base of the models users write: strict types, as the API server checks them."""

    model_config = pydantic.ConfigDict(strict=True)


@functools.cache
def _searcher(pattern: str) -> pydantic_core.SchemaValidator:
    return pydantic_core.SchemaValidator(core_schema.str_schema(pattern=pattern))


def matches(pattern: str, text: str) -> bool:
    """Python for CEL's ``matches()``: a search with the regex engine of pydantic's field
    patterns (Rust's, which reads these patterns as RE2 does; Python's ``re`` differs on
    ``$`` before a final newline)."""
    try:
        _searcher(pattern).validate_python(text)
    except pydantic_core.ValidationError:
        return False
    return True


# -- reusable string types ------------------------------------------------------------------


def _positive_duration(value: str) -> str | None:
    if matches(v.ZERO_DURATION_PATTERN, value):
        return f"must be a duration above zero such as 30s, 5m or 1h30m, got {value!r}"
    return None


_DURATION_DESCRIPTION = "A duration such as 30s, 5m, 1h30m or 1.5h (units ns, us, ms, s, m, h)."
Duration = Annotated[
    str,
    pydantic.Field(pattern=v.DURATION_PATTERN, max_length=32, description=_DURATION_DESCRIPTION),
]
PositiveDuration = Annotated[
    Duration,
    checked(
        Rule(
            f"!self.matches({cel_string(v.ZERO_DURATION_PATTERN)})",
            "must be a duration above zero such as 30s, 5m or 1h30m",
            _positive_duration,
            message_expression=(
                "'must be a duration above zero such as 30s, 5m or 1h30m, got ' + \"'\" + self"
                ' + "\'"'
            ),
        )
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
DnsLabel = Annotated[str, pydantic.Field(pattern=v.DNS_LABEL_PATTERN, max_length=63)]
DnsSubdomain = Annotated[str, pydantic.Field(pattern=v.DNS_SUBDOMAIN_PATTERN, max_length=253)]
ModelName = Annotated[
    str,
    pydantic.Field(
        pattern=v.MODEL_NAME_PATTERN,
        max_length=128,
        description="Registered model name in the MLflow registry.",
    ),
]
ImageRef = Annotated[
    str,
    pydantic.Field(
        pattern=v.IMAGE_PATTERN,
        max_length=512,
        description="Container image reference: [registry[:port]/]repository[:tag][@digest], "
        "the repository in lower case, e.g. ghcr.io/acme/train:1.2 or python@sha256:<64 hex>.",
    ),
]


def _not_reserved(value: str) -> str | None:
    if matches(v.RESERVED_ALIAS_PATTERN, value):
        return f"alias {value!r} is reserved by MLflow ('latest' and v<number> name versions)"
    return None


ModelAlias = Annotated[
    str,
    pydantic.Field(
        pattern=v.ALIAS_PATTERN,
        max_length=63,
        description="A registry alias such as champion: a letter, then letters, digits, '_' "
        "or '-'. MLflow reserves 'latest' and v<number>.",
    ),
    checked(
        Rule(
            f"!self.matches({cel_string(v.RESERVED_ALIAS_PATTERN)})",
            "alias is reserved by MLflow ('latest' and v<number> name versions)",
            _not_reserved,
            message_expression=(
                "\"alias '\" + self + \"' is reserved by MLflow ('latest' and v<number> name"
                ' versions)"'
            ),
        )
    ),
]


def _forward_ranges(value: str) -> str | None:
    backward = v.cron_backward_range(value)
    return f"range {backward!r} of schedule {value!r} runs backwards" if backward else None


_CRON_NAMES = "{" + ", ".join(f"'{k}': {n}" for k, n in v.CRON_NAMES.items()) + "}"
CronSchedule = Annotated[
    str,
    pydantic.Field(
        pattern=v.CRON_PATTERN,
        max_length=128,
        description="Cron schedule as a CronJob takes it: five fields (minute 0-59, hour 0-23, "
        "day of month 1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT) with *, ?, "
        "lists, ranges that do not run backwards and /steps, or @yearly, @annually, @monthly, "
        "@weekly, @daily, @midnight, @hourly.",
    ),
    checked(
        Rule(
            f"self.findAll({cel_string(v.CRON_RANGE_PATTERN)}).all(r, "
            "int(r.split('-')[0]) <= int(r.split('-')[1])) && "
            f"self.lowerAscii().findAll({cel_string(v.CRON_NAME_RANGE_PATTERN)}).all(r, "
            f"!(r.split('-')[0] in {_CRON_NAMES}) || !(r.split('-')[1] in {_CRON_NAMES}) || "
            f"{_CRON_NAMES}[r.split('-')[0]] <= {_CRON_NAMES}[r.split('-')[1]])",
            "a range of the schedule runs backwards (its start is after its end)",
            _forward_ranges,
            message_expression=(
                '"a range of schedule \'" + self + "\' runs backwards (its start is after its end)"'
            ),
        )
    ),
]
