"""Patterns and pure checks for the strings the CRDs accept; both sides use them.

The patterns go into the CRD schemas (the API server runs them with Go's RE2) and into the
pydantic models (pydantic-core runs them with Rust's ``regex``). Both engines read them the
same way because they stay inside the common subset: no look-around, no back-references,
explicit ASCII classes instead of ``\\s``/``\\d``/``\\w`` (Unicode-aware in Rust, ASCII in RE2).
The functions below are the Python side of checks that need more than one pattern.
"""

from __future__ import annotations

import decimal
import re

# -- Kubernetes names and labels (k8s.io/apimachinery/pkg/util/validation) ------------------

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL_PATTERN = rf"^{DNS_LABEL}$"
DNS_SUBDOMAIN_PATTERN = rf"^{DNS_LABEL}(\.{DNS_LABEL})*$"
# A qualified name (label key, toleration key, topology key): an optional DNS-subdomain
# prefix and '/', then a name of at most 63 characters.
_QNAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
QUALIFIED_NAME_PATTERN = rf"^({DNS_LABEL}(\.{DNS_LABEL})*/)?{_QNAME}$"
OPTIONAL_QUALIFIED_NAME_PATTERN = rf"^(({DNS_LABEL}(\.{DNS_LABEL})*/)?{_QNAME})?$"
# Annotation keys are validated lower-cased, so their prefix may have capitals.
_CI_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
ANNOTATION_KEY_PATTERN = rf"^({_CI_LABEL}(\.{_CI_LABEL})*/)?{_QNAME}$"
# The prefix of a qualified name is a DNS subdomain: at most 253 characters.
PREFIX_LENGTH_PATTERN = r"^([^/]{1,253}/)?[^/]+$"
PREFIX_TOO_LONG_PATTERN = r"^[^/]{254,}/"
LABEL_VALUE_PATTERN = rf"^({_QNAME})?$"
QUALIFIED_NAME_MAX = 253 + 1 + 63

# -- quantities (k8s.io/apimachinery/pkg/api/resource) --------------------------------------

_QTY_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
_QTY_SUFFIX = r"([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])"
QUANTITY_PATTERN = rf"^[+-]?{_QTY_NUMBER}{_QTY_SUFFIX}?$"
# Above zero: no minus sign and at least one non-zero digit in the number.
_QTY_NONZERO = r"([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)"
POSITIVE_QUANTITY_PATTERN = rf"^\+?{_QTY_NONZERO}{_QTY_SUFFIX}?$"
_SUFFIX_VALUE = {
    "": decimal.Decimal(1),
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    **{s: decimal.Decimal(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


def parse_quantity(text: str) -> decimal.Decimal:
    """The value of a Kubernetes quantity string such as ``500m``, ``1Gi`` or ``1e3``."""
    match = re.fullmatch(QUANTITY_PATTERN, text)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    suffix = match.group(3) or ""
    number = decimal.Decimal(text[: len(text) - len(suffix)] or "0")
    if suffix not in _SUFFIX_VALUE:  # an exponent: e3, E-2
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIX_VALUE[suffix]


# -- durations (Go's time.ParseDuration, without signs) -------------------------------------

_DURATION_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
_DURATION_UNIT = r"(ns|us|ms|s|m|h)"
DURATION_PATTERN = rf"^({_DURATION_NUMBER}{_DURATION_UNIT})+$"
ZERO_DURATION_PATTERN = rf"^((0+(\.0*)?|\.0+){_DURATION_UNIT})+$"
_DURATION_PART = re.compile(rf"{_DURATION_NUMBER}{_DURATION_UNIT}")
_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """Seconds in a duration such as ``1m30s`` or ``1.5h``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r}")
    parts = _DURATION_PART.finditer(text)
    return sum(float(m.group(1)) * _DURATION_SECONDS[m.group(3)] for m in parts)


# -- cron schedules (robfig/cron's standard parser, as CronJob uses it) ---------------------


def _cron_field(value: str) -> str:
    item = rf"(\*|\?|({value})(-({value}))?)(/[1-9][0-9]*)?"
    return rf"{item}(,{item})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
CRON_FIELDS = (
    _cron_field(r"0?[0-9]|[1-5][0-9]"),  # minute 0-59
    _cron_field(r"0?[0-9]|1[0-9]|2[0-3]"),  # hour 0-23
    _cron_field(r"0?[1-9]|[12][0-9]|3[01]"),  # day of month 1-31
    _cron_field(rf"0?[1-9]|1[0-2]|(?i:{_MONTHS})"),  # month 1-12 or JAN-DEC
    _cron_field(rf"0?[0-6]|(?i:{_DAYS})"),  # day of week 0-6 or SUN-SAT
)
CRON_MACROS = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
CRON_PATTERN = (
    rf"^(@({'|'.join(CRON_MACROS)})|[ \t]*"
    + r"[ \t]+".join(f"({f})" for f in CRON_FIELDS)
    + r"[ \t]*)$"
)
# Ranges must not run backwards ("5-1", "sat-sun"); names count as their numbers.
CRON_RANGE_PATTERN = r"[0-9]+-[0-9]+"
CRON_NAME_RANGE_PATTERN = r"[a-z]{3}-[a-z]{3}"
CRON_NAMES = {
    **{m: i for i, m in enumerate(_MONTHS.split("|"), 1)},
    **{d: i for i, d in enumerate(_DAYS.split("|"))},
}


def cron_backward_range(schedule: str) -> str | None:
    """The first range of ``schedule`` whose start is after its end, if any."""
    for r in re.findall(CRON_RANGE_PATTERN, schedule):
        start, end = str(r).split("-")
        if int(start) > int(end):
            return str(r)
    for r in re.findall(CRON_NAME_RANGE_PATTERN, schedule.lower()):
        start, end = str(r).split("-")
        if start in CRON_NAMES and end in CRON_NAMES and CRON_NAMES[start] > CRON_NAMES[end]:
            return str(r)
    return None


# -- container images (github.com/distribution/reference) ----------------------------------

_DOMAIN_COMPONENT = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOST = rf"({_DOMAIN_COMPONENT}(\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_PATH_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})"
IMAGE_PATTERN = (
    rf"^({_HOST}(:[0-9]+)?/)?{_PATH_COMPONENT}(/{_PATH_COMPONENT})*(:{_TAG})?(@{_DIGEST})?$"
)

# -- MLflow ----------------------------------------------------------------------------------

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Aliases also become label values, hence the stricter-than-MLflow shape.
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
# mlflow.utils.validation._validate_model_alias_name_reserved: 'latest' (any case) and
# v<digits> (which would shadow version numbers) are refused by the registry.
RESERVED_ALIAS_PATTERN = r"^([lL][aA][tT][eE][sS][tT]|[vV][0-9]+)$"
RUN_ID_PATTERN = r"^[a-f0-9]{32}$"
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
_URI_CHARS = r"[-A-Za-z0-9._~!$&'()*+,;=:@%]"
_URI_PATH = rf"{_URI_CHARS}+(/{_URI_CHARS}+)*/?"
MODEL_URI_PATTERN = (
    r"^(models:/"
    + _URI_PATH
    + r"|runs:/[a-f0-9]{32}/"
    + _URI_PATH
    + r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/"
    + _URI_PATH
    + r"|mlflow-artifacts:(//[-A-Za-z0-9.]+(:[0-9]+)?)?/"
    + _URI_PATH
    + ")$"
)
# A '.' or '..' path segment, also percent-encoded: the download would leave the prefix.
DOT_SEGMENT_PATTERN = r"(^|/)(\.|%2[eE]){1,2}(/|$)"

# -- canary analysis -------------------------------------------------------------------------

# What toque.reconcile.analysis.satisfies parses: `result <op> <number>` where the number is
# one Python's float() reads (no inf/nan). Spaces and tabs only, so that RE2, Rust and
# Python agree (tests/unit/test_schema_success_condition.py holds the two together).
SUCCESS_NUMBER = r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
SUCCESS_CONDITION_PATTERN = rf"^[ \t]*result[ \t]*(<=|>=|==|!=|<|>)[ \t]*{SUCCESS_NUMBER}[ \t]*$"

# -- env vars (k8s.io/kubernetes/pkg/apis/core/validation, 1.34) ----------------------------

# RelaxedEnvironmentVariableValidation is GA in 1.34: printable ASCII except '='.
ENV_NAME_PATTERN = r"^[ -<>-~]+$"
CONFIG_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
FIELD_PATH_PATTERN = (
    r"^(metadata\.(name|namespace|uid)|spec\.(nodeName|serviceAccountName)"
    r"|status\.(hostIP|hostIPs|podIP|podIPs)"
    rf"|metadata\.labels\['({DNS_LABEL}(\.{DNS_LABEL})*/)?{_QNAME}'\]"
    rf"|metadata\.annotations\['({_CI_LABEL}(\.{_CI_LABEL})*/)?{_QNAME}'\])$"
)
RESOURCE_FIELD_PATTERN = (
    r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[A-Za-z0-9.]+)$"
)
CPU_DIVISORS = ("1", "1m")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


def divisor_ok(resource: str, divisor: int | str) -> bool:
    """Whether ``divisor`` is one Kubernetes allows for ``resource`` of a resourceFieldRef."""
    allowed = CPU_DIVISORS if resource.endswith(".cpu") else BYTE_DIVISORS
    try:
        value = parse_quantity(str(divisor))
    except ValueError:
        return False
    return any(value == parse_quantity(a) for a in allowed)


# -- metric ranges ---------------------------------------------------------------------------

# Metrics whose values lie in [0, 1] whatever the model: a threshold outside can never be
# met (or is always met). Optional train_/val_/test_ prefix, as the trainer logs them.
_SPLIT = r"((train|training|val|valid|validation|test|eval)_)?"
BOUNDED_METRIC_PATTERN = (
    rf"^{_SPLIT}(accuracy|balanced_accuracy|precision|recall|f1|f1_score|f1_macro|f1_micro"
    r"|f1_weighted|roc_auc|auc|roc_auc_score|pr_auc|average_precision|specificity"
    r"|sensitivity|tpr|fpr|tnr|fnr|jaccard|top_k_accuracy|top_5_accuracy|hit_rate)$"
)
# Metrics that are never negative.
NONNEGATIVE_METRIC_PATTERN = (
    rf"^{_SPLIT}(loss|log_loss|logloss|mse|rmse|mae|mape|msle|rmsle|median_absolute_error"
    r"|mean_squared_error|mean_absolute_error|root_mean_squared_error|hinge_loss|brier_score"
    r"|cross_entropy)$"
)
