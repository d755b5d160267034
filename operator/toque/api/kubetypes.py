"""Kubernetes core types the CRDs embed, validated as the API server validates a Pod.

Quantities, label keys and values (also as map keys), tolerations, env vars with their
sources, and affinity with its node and pod terms follow ``k8s.io/api/core/v1`` and the
checks of ``pkg/apis/core/validation`` (Kubernetes 1.34): what a Pod would refuse is refused
at ``kubectl apply`` of the Toque resource, not when the operator creates the Pod.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import pydantic
from pydantic_core import core_schema

from toque.api import validators as v
from toque.api.schema import Checked, Rule, SpecModel, cel_string, checked, matches

# -- quantities ------------------------------------------------------------------------------

_QUANTITY_HINT = "a Kubernetes quantity above zero such as 500m, 0.5, 2, 1e3 or 1Gi"


def _positive_quantity(value: Any) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be {_QUANTITY_HINT}, got {value!r}")
    if isinstance(value, str):
        if len(value) > 64 or not matches(v.QUANTITY_PATTERN, value):
            raise ValueError(f"must be {_QUANTITY_HINT}, got {value!r} (not a quantity)")
        if not matches(v.POSITIVE_QUANTITY_PATTERN, value):
            raise ValueError(f"must be {_QUANTITY_HINT}, got {value!r} (not above zero)")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be {_QUANTITY_HINT}, got {value!r}")
    if value <= 0:
        raise ValueError(f"must be {_QUANTITY_HINT}, got {value!r} (not above zero)")
    return value


# A quantity is a string or a JSON number, as in a Pod (`cpu: 0.5`). The CRD cannot say
# "number or string" with a type (x-kubernetes-int-or-string refuses 0.5), so the field is
# untyped and the value validations that apply per JSON kind do the work: the pattern for
# strings, the minimum for numbers; no object, array or boolean fits all of them. CEL cannot
# see untyped fields, hence no rule here.
PositiveQuantity = Annotated[
    int | float | str,
    pydantic.PlainValidator(_positive_quantity),
    pydantic.WithJsonSchema(
        {
            "x-kubernetes-preserve-unknown-fields": True,
            "pattern": v.POSITIVE_QUANTITY_PATTERN,
            "maxLength": 64,
            "minimum": 0,
            "exclusiveMinimum": True,
            "minProperties": 1,
            "maxProperties": 0,
            "minItems": 1,
            "maxItems": 0,
            "not": {"enum": [True, False]},
        }
    ),
]

# -- names, labels and annotations -----------------------------------------------------------

_QNAME_RULE = (
    "an optional DNS subdomain prefix of at most 253 characters and '/', then a name of "
    "1-63 characters [A-Za-z0-9-_.] that starts and ends with a letter or digit"
)


def _prefix_length(value: str) -> str | None:
    if matches(v.PREFIX_TOO_LONG_PATTERN, value):
        return f"the prefix of {value!r} is longer than 253 characters"
    return None


_PREFIX_RULE = Rule(
    f"!self.matches({cel_string(v.PREFIX_TOO_LONG_PATTERN)})",
    "the prefix (before '/') must be at most 253 characters",
    _prefix_length,
)
LabelKey = Annotated[
    str,
    pydantic.Field(
        min_length=1,
        max_length=v.QUALIFIED_NAME_MAX,
        pattern=v.QUALIFIED_NAME_PATTERN,
        description=f"A label key: {_QNAME_RULE}.",
    ),
    checked(_PREFIX_RULE),
]
LabelValue = Annotated[
    str,
    pydantic.Field(
        max_length=63,
        pattern=v.LABEL_VALUE_PATTERN,
        description="A label value: empty, or 1-63 characters [A-Za-z0-9-_.] that start and "
        "end with a letter or digit.",
    ),
]


def _keys_rule(what: str, key_pattern: str) -> Rule:
    bad = (
        f"!k.matches({cel_string(key_pattern)}) || "
        f"k.matches({cel_string(v.PREFIX_TOO_LONG_PATTERN)})"
    )

    def check(value: dict[str, Any]) -> str | None:
        for key in value:
            if not matches(key_pattern, key) or matches(v.PREFIX_TOO_LONG_PATTERN, key):
                return f"invalid {what} key {key!r}: a key is {_QNAME_RULE}"
        return None

    return Rule(
        f"!self.exists(k, {bad})",
        f"invalid {what} key: a key is {_QNAME_RULE}",
        check,
        message_expression=(
            f'"invalid {what} key \'" + self.filter(k, {bad})[0] + "\': a key is {_QNAME_RULE}"'
        ),
    )


LabelMap = Annotated[
    dict[str, LabelValue],
    pydantic.Field(max_length=64),
    checked(_keys_rule("label", v.QUALIFIED_NAME_PATTERN)),
]
NodeSelectorMap = Annotated[
    dict[str, LabelValue],
    pydantic.Field(
        max_length=64,
        description="Node labels the pod's node must have; keys and values as label keys and "
        "values.",
    ),
    checked(_keys_rule("nodeSelector", v.QUALIFIED_NAME_PATTERN)),
]
AnnotationMap = Annotated[
    dict[str, Annotated[str, pydantic.Field(max_length=65536)]],
    pydantic.Field(max_length=64),
    checked(_keys_rule("annotation", v.ANNOTATION_KEY_PATTERN)),
]


def reserved_keys_rule(what: str, keys: tuple[str, ...]) -> Checked:
    """``keys`` are set by the operator, which would silently overwrite the user's value."""
    listed = "[" + ", ".join(f"'{k}'" for k in keys) + "]"
    names = ", ".join(keys)

    def check(value: dict[str, Any]) -> str | None:
        for key in value:
            if key in keys:
                return f"{what} {key!r} is reserved: the operator sets {names}"
        return None

    return checked(
        Rule(
            f"!self.exists(k, k in {listed})",
            f"{what}s {names} are reserved: the operator sets them",
            check,
            message_expression=(
                f'"{what} \'" + self.filter(k, k in {listed})[0] + '
                f'"\' is reserved: the operator sets {names}"'
            ),
        )
    )


# -- tolerations -----------------------------------------------------------------------------


def _toleration_key(t: Toleration) -> str | None:
    if not t.key and t.operator != "Exists":
        return "operator must be Exists when key is empty (which tolerates every taint)"
    return None


def _toleration_value(t: Toleration) -> str | None:
    if t.operator == "Exists" and t.value:
        return f"value must be empty when operator is Exists, got {t.value!r}"
    return None


def _toleration_seconds(t: Toleration) -> str | None:
    if t.toleration_seconds is not None and t.effect != "NoExecute":
        return "tolerationSeconds is only valid with effect NoExecute"
    return None


class Toleration(SpecModel):
    """A pod toleration, as ``core/v1.Toleration``."""

    cel_rules = (
        Rule(
            "(has(self.key) && self.key != '') || (has(self.operator) && "
            "self.operator == 'Exists')",
            "operator must be Exists when key is empty (which tolerates every taint)",
            _toleration_key,
            ".operator",
        ),
        Rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || "
            "self.value == ''",
            "value must be empty when operator is Exists",
            _toleration_value,
            ".value",
        ),
        Rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds is only valid with effect NoExecute",
            _toleration_seconds,
            ".tolerationSeconds",
        ),
    )

    key: (
        Annotated[
            str,
            pydantic.Field(
                max_length=v.QUALIFIED_NAME_MAX, pattern=v.OPTIONAL_QUALIFIED_NAME_PATTERN
            ),
            checked(_PREFIX_RULE),
        ]
        | None
    ) = pydantic.Field(
        default=None,
        description="Taint key to tolerate (a label key); empty with Exists tolerates all.",
    )
    operator: Literal["Exists", "Equal"] | None = pydantic.Field(
        default=None, description="Equal (the default) or Exists."
    )
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = pydantic.Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = pydantic.Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )


# -- env vars --------------------------------------------------------------------------------


class KeySelector(SpecModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: str = pydantic.Field(pattern=v.DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = pydantic.Field(max_length=253, pattern=v.CONFIG_KEY_PATTERN)
    optional: bool | None = None


# Kept for callers of the old name.
SecretKeySelector = KeySelector


class ObjectFieldSelector(SpecModel):
    """A field of the pod (the downward API), as ``core/v1.ObjectFieldSelector``."""

    api_version: Literal["v1"] | None = None
    field_path: str = pydantic.Field(
        max_length=512,
        pattern=v.FIELD_PATH_PATTERN,
        description="metadata.name, metadata.namespace, metadata.uid, "
        "metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, "
        "spec.serviceAccountName, status.hostIP, status.hostIPs, status.podIP or "
        "status.podIPs.",
    )


def _divisor(r: ResourceFieldSelector) -> str | None:
    if r.divisor is not None and not v.divisor_ok(r.resource, r.divisor):
        allowed = v.CPU_DIVISORS if r.resource.endswith(".cpu") else v.BYTE_DIVISORS
        return f"divisor of {r.resource} must be one of {', '.join(allowed)}, got {r.divisor!r}"
    return None


def _divisor_cel() -> str:
    def one_of(values: tuple[str, ...]) -> str:
        items = ", ".join(f"'{d}'" for d in values)
        return f"[{items}].exists(d, quantity(string(self.divisor)).compareTo(quantity(d)) == 0)"

    return (
        "!has(self.divisor) || (isQuantity(string(self.divisor)) && "
        f"(self.resource.endsWith('.cpu') ? {one_of(v.CPU_DIVISORS)} : "
        f"{one_of(v.BYTE_DIVISORS)}))"
    )


class ResourceFieldSelector(SpecModel):
    """A resource request or limit of a container, as ``core/v1.ResourceFieldSelector``."""

    cel_rules = (
        Rule(
            _divisor_cel(),
            "divisor must be 1 or 1m for cpu, and 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, "
            "1Pi or 1Ei for memory, ephemeral-storage and hugepages",
            _divisor,
            ".divisor",
        ),
    )

    container_name: str | None = pydantic.Field(
        default=None, pattern=v.DNS_LABEL_PATTERN, max_length=63
    )
    resource: str = pydantic.Field(
        max_length=64,
        pattern=v.RESOURCE_FIELD_PATTERN,
        description="limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, "
        "requests.memory, requests.ephemeral-storage, limits.hugepages-<size> or "
        "requests.hugepages-<size>.",
    )
    divisor: (
        Annotated[
            int | str,
            pydantic.WithJsonSchema({"x-kubernetes-int-or-string": True, "maxLength": 16}),
        ]
        | None
    ) = pydantic.Field(
        default=None, description="Unit of the exposed value, e.g. 1m for cpu or 1Mi for memory."
    )


_ONE_SOURCE = "[has(self.fieldRef), has(self.resourceFieldRef), has(self.configMapKeyRef), "
_ONE_SOURCE += "has(self.secretKeyRef)].filter(x, x).size() == 1"


def _one_source(s: EnvVarSource) -> str | None:
    count = sum(
        x is not None
        for x in (s.field_ref, s.resource_field_ref, s.config_map_key_ref, s.secret_key_ref)
    )
    if count != 1:
        return "exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef"
    return None


class EnvVarSource(SpecModel):
    """Where an env var's value comes from: exactly one source. Credentials only through
    secretKeyRef."""

    cel_rules = (
        Rule(
            _ONE_SOURCE,
            "exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
            _one_source,
        ),
    )

    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


def _value_xor(e: EnvVar) -> str | None:
    if e.value and e.value_from is not None:
        return f"env {e.name!r}: value and valueFrom are mutually exclusive"
    return None


class EnvVar(SpecModel):
    """An environment variable of the container, as ``core/v1.EnvVar``."""

    cel_rules = (
        Rule(
            "!(has(self.value) && self.value != '' && has(self.valueFrom))",
            "value and valueFrom are mutually exclusive",
            _value_xor,
        ),
    )

    name: str = pydantic.Field(
        pattern=v.ENV_NAME_PATTERN,
        max_length=253,
        description="Printable ASCII other than '=' (Kubernetes 1.34).",
    )
    value: str | None = pydantic.Field(default=None, max_length=131072)
    value_from: EnvVarSource | None = None


# -- affinity --------------------------------------------------------------------------------

_SET_OPS = "In, NotIn"
_VALUES_RULES_DOC = (
    "In and NotIn need values, Exists and DoesNotExist take none, Gt and Lt one integer"
)


def _requirement_check(r: Any) -> str | None:
    values = r.values or []
    if r.operator in ("In", "NotIn") and not values:
        return f"values must be non-empty when operator is {r.operator} (key {r.key!r})"
    if r.operator in ("Exists", "DoesNotExist") and values:
        return f"values must be empty when operator is {r.operator} (key {r.key!r})"
    if r.operator in ("Gt", "Lt") and (len(values) != 1 or not matches(r"^-?[0-9]+$", values[0])):
        return f"operator {r.operator} needs exactly one integer value, got {values!r}"
    return None


_REQUIREMENT_CEL = (
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
    "(self.operator in ['Exists', 'DoesNotExist'] ? (!has(self.values) || size(self.values) "
    "== 0) : (has(self.values) && size(self.values) == 1 && "
    "self.values[0].matches(r'^-?[0-9]+$')))"
)
_REQUIREMENT_MESSAGE = (
    "'values do not fit operator ' + self.operator + ' (key ' + self.key + '): "
    f"{_VALUES_RULES_DOC}'"
)
_REQUIREMENT_RULE = Rule(
    _REQUIREMENT_CEL,
    f"values do not fit the operator: {_VALUES_RULES_DOC}",
    _requirement_check,
    ".values",
    message_expression=_REQUIREMENT_MESSAGE,
)

NodeOperator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]


class NodeSelectorRequirement(SpecModel):
    """A node label requirement of required node affinity; values are label values."""

    cel_rules = (_REQUIREMENT_RULE,)

    key: LabelKey
    operator: NodeOperator
    values: list[LabelValue] | None = pydantic.Field(default=None, max_length=64)


class PreferredNodeSelectorRequirement(SpecModel):
    """A node label requirement of preferred node affinity (Kubernetes lets its values be
    any string, as they can only make the preference miss)."""

    cel_rules = (_REQUIREMENT_RULE,)

    key: LabelKey
    operator: NodeOperator
    values: list[Annotated[str, pydantic.Field(max_length=253)]] | None = pydantic.Field(
        default=None, max_length=64
    )


class NodeFieldRequirement(SpecModel):
    """A node field requirement: Kubernetes supports metadata.name with In or NotIn and one
    node name."""

    key: Literal["metadata.name"]
    operator: Literal["In", "NotIn"]
    values: list[
        Annotated[str, pydantic.Field(pattern=v.DNS_SUBDOMAIN_PATTERN, max_length=253)]
    ] = pydantic.Field(min_length=1, max_length=1)


class NodeSelectorTerm(SpecModel):
    """Requirements ANDed together."""

    match_expressions: list[NodeSelectorRequirement] | None = pydantic.Field(
        default=None, max_length=32
    )
    match_fields: list[NodeFieldRequirement] | None = pydantic.Field(default=None, max_length=8)


class PreferredNodeSelectorTerm(SpecModel):
    """Requirements ANDed together, of a preferred term."""

    match_expressions: list[PreferredNodeSelectorRequirement] | None = pydantic.Field(
        default=None, max_length=32
    )
    match_fields: list[NodeFieldRequirement] | None = pydantic.Field(default=None, max_length=8)


class NodeSelector(SpecModel):
    """Terms ORed together; at least one."""

    node_selector_terms: list[NodeSelectorTerm] = pydantic.Field(min_length=1, max_length=16)


class PreferredSchedulingTerm(SpecModel):
    """A weighted node preference."""

    weight: int = pydantic.Field(ge=1, le=100)
    preference: PreferredNodeSelectorTerm


class NodeAffinity(SpecModel):
    """Node affinity, as ``core/v1.NodeAffinity``."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        pydantic.Field(default=None, max_length=16)
    )


class LabelSelectorRequirement(SpecModel):
    """A label selector requirement, as ``metav1.LabelSelectorRequirement``."""

    cel_rules = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
            "(!has(self.values) || size(self.values) == 0)",
            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            _requirement_check,
            ".values",
            message_expression=(
                "'values do not fit operator ' + self.operator + ' (key ' + self.key + '): In "
                "and NotIn need values, Exists and DoesNotExist take none'"
            ),
        ),
    )

    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] | None = pydantic.Field(default=None, max_length=64)


class LabelSelector(SpecModel):
    """A label selector, as ``metav1.LabelSelector``."""

    match_labels: LabelMap | None = None
    match_expressions: list[LabelSelectorRequirement] | None = pydantic.Field(
        default=None, max_length=16
    )


def _label_keys(t: PodAffinityTerm) -> str | None:
    if (t.match_label_keys or t.mismatch_label_keys) and t.label_selector is None:
        return "matchLabelKeys and mismatchLabelKeys need a labelSelector"
    both = set(t.match_label_keys or []) & set(t.mismatch_label_keys or [])
    if both:
        return f"label key {sorted(both)[0]!r} is in both matchLabelKeys and mismatchLabelKeys"
    return None


class PodAffinityTerm(SpecModel):
    """Pods (selected by labels, in namespaces) to be co-located with, or kept away from,
    on nodes sharing a ``topologyKey`` label value."""

    cel_rules = (
        Rule(
            "has(self.labelSelector) || ((!has(self.matchLabelKeys) || "
            "size(self.matchLabelKeys) == 0) && (!has(self.mismatchLabelKeys) || "
            "size(self.mismatchLabelKeys) == 0))",
            "matchLabelKeys and mismatchLabelKeys need a labelSelector",
            lambda t: _label_keys(t) if t.label_selector is None else None,
        ),
        Rule(
            "!has(self.matchLabelKeys) || !has(self.mismatchLabelKeys) || "
            "!self.matchLabelKeys.exists(k, k in self.mismatchLabelKeys)",
            "a label key must not be in both matchLabelKeys and mismatchLabelKeys",
            lambda t: _label_keys(t) if t.label_selector is not None else None,
        ),
    )

    label_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    namespaces: (
        list[Annotated[str, pydantic.Field(pattern=v.DNS_LABEL_PATTERN, max_length=63)]] | None
    ) = pydantic.Field(default=None, max_length=32)
    topology_key: LabelKey = pydantic.Field(
        description="Node label whose value defines co-location, e.g. kubernetes.io/hostname."
    )
    match_label_keys: list[LabelKey] | None = pydantic.Field(default=None, max_length=16)
    mismatch_label_keys: list[LabelKey] | None = pydantic.Field(default=None, max_length=16)


class WeightedPodAffinityTerm(SpecModel):
    """A weighted pod (anti-)affinity preference."""

    weight: int = pydantic.Field(ge=1, le=100)
    pod_affinity_term: PodAffinityTerm


class PodAffinity(SpecModel):
    """Pod affinity or anti-affinity, as ``core/v1.PodAffinity``/``PodAntiAffinity``."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = (
        pydantic.Field(default=None, max_length=16)
    )
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        pydantic.Field(default=None, max_length=16)
    )


class Affinity(SpecModel):
    """Scheduling constraints of the pod, as ``core/v1.Affinity``."""

    node_affinity: NodeAffinity | None = None
    pod_affinity: PodAffinity | None = None
    pod_anti_affinity: PodAffinity | None = None


class _AffinityDict:
    """Validates as ``Affinity`` and keeps the plain dict (what goes into the pod spec)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda model: model.to_kube(),
            handler.generate_schema(Affinity),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda d: d),
        )


AffinityDict = Annotated[dict[str, Any], _AffinityDict]
