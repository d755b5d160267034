"""The data of drift monitoring: profiles, current counts, rules and reports.

Plain dataclasses shared by every module of ``toque.drift`` (``profile`` builds a
``Profile``, ``current`` counts a ``CurrentCounts`` against it, ``check`` turns both and the
``Rules`` into a ``Report``) and by their callers: the ``toque drift`` CLI, the model
server, the operator. Bucket semantics are Prometheus ``le``: numeric bucket ``i`` holds the
values in ``(edges[i-1], edges[i]]``, bucket 0 everything up to ``edges[0]``, the last
bucket everything above ``edges[-1]``; categorical buckets are the profile's categories, in
order, then ``__other__`` (``OTHER``) for every value the profile does not name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, get_args

from toque.core import bins

Kind = Literal["numeric", "categorical"]
ThresholdSource = Literal["fixed", "default", "auto"]
Verdict = Literal["Drift", "NoDrift", "InsufficientData", "Constant", "Missing"]
ReportVerdict = Literal["Healthy", "Drifted", "InsufficientData"]
ThresholdMode = Literal["default", "auto"]
Number = TypeVar("Number", int, float)

METHODS = ("psi", "ks", "chi2", "jsd", "wasserstein", "ztest")
OTHER = "__other__"
# Top-class probability buckets of the CBPE-style estimate (``le`` semantics): 0.05 … 1.0,
# the buckets of the model server's confidence histogram.
CONFIDENCE_EDGES: list[float] = list(bins.CONFIDENCE_EDGES)


class DriftError(Exception):
    """Base of the errors of ``toque.drift``: the message is meant for a user, on one line."""


class ProfileError(DriftError):
    """A reference profile that cannot be read or used (an old bins document, bad JSON)."""


class InputError(DriftError):
    """Current data or rules that do not fit the profile (a missing column, a bad method)."""


@dataclasses.dataclass(frozen=True)
class FeatureProfile:
    """One column of the reference: its buckets and what it looked like."""

    name: str
    kind: Kind
    rows: int  # reference rows, missing ones included
    missing: int  # None/NaN rows
    counts: list[int]  # non-missing rows per bucket
    edges: list[float] = dataclasses.field(default_factory=list)  # numeric only
    categories: list[str] = dataclasses.field(default_factory=list)  # categorical only
    binary: bool = False  # at most two distinct non-missing values
    mean: float | None = None
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    # method -> scores of reference chunks against the whole reference (``auto`` thresholds)
    calibration: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    chunk_rows: int | None = None
    # Distinct non-missing reference values, counted up to ``profile.DISTINCT_LIMIT``
    # (None: unknown, e.g. a profile written by an older version).
    distinct: int | None = None
    # Numeric only, for checks on raw rows (empty: a profile written before fine grids, or
    # a column with infinite values): about 100 reference quantiles, a superset of
    # ``edges``, ``le`` buckets as ``edges``; the reference rows per fine bucket (so the
    # exact reference CDF at each fine edge) and the mean of each fine bucket's values.
    fine_edges: list[float] = dataclasses.field(default_factory=list)
    fine_counts: list[int] = dataclasses.field(default_factory=list)
    fine_means: list[float] = dataclasses.field(default_factory=list)

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


@dataclasses.dataclass(frozen=True)
class Performance:
    """A classifier on the reference, per top-class-probability bucket (CBPE-style)."""

    classes: list[str]
    confidence_edges: list[float]
    counts: list[int]  # len(confidence_edges) + 1; the last (> 1.0) bucket is always 0
    accuracy: list[float | None]  # per bucket; None where the bucket is empty
    reference_accuracy: float


@dataclasses.dataclass(frozen=True)
class Profile:
    """What the reference looked like: computed once, stored as JSON next to the model."""

    features: dict[str, FeatureProfile]
    rows: int
    prediction: FeatureProfile | None = None
    performance: Performance | None = None
    # PCA reconstruction error of the reference: mean, scale, components, columns, and the
    # error's mean/std over the reference chunks (``multivariate`` module).
    multivariate: dict[str, Any] | None = None
    source: str = ""


@dataclasses.dataclass
class FeatureCounts:
    """Current rows of one feature in the profile's buckets, and its missing rows.

    ``fine`` and ``sums``: the rows and the sum of their values per bucket of the profile's
    fine grid, ``minimum`` and ``maximum`` of the values, when counted from raw rows
    (``current.count``); None when counted from the serving histograms, which have none.
    """

    counts: list[int]
    missing: int = 0
    fine: list[int] | None = None
    sums: list[float] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclasses.dataclass
class CurrentCounts:
    """Current data counted in the profile's buckets; ``add`` merges another count."""

    rows: int
    features: dict[str, FeatureCounts]
    prediction: FeatureCounts | None = None
    confidence: list[int] | None = None  # aligned with CONFIDENCE_EDGES + the overflow

    def add(self, other: CurrentCounts) -> CurrentCounts:
        """Add ``other`` (same profile) into this count in place; returns ``self``."""
        self.rows += other.rows
        for name, theirs in other.features.items():
            self.features[name] = _merge(self.features.get(name), theirs, name)
        if other.prediction is not None:
            self.prediction = _merge(self.prediction, other.prediction, "prediction")
        if other.confidence is not None:
            mine = self.confidence or [0] * len(other.confidence)
            self.confidence = _sum(mine, other.confidence, "confidence")
        return self


def _merge(mine: FeatureCounts | None, theirs: FeatureCounts, name: str) -> FeatureCounts:
    if mine is None or _empty(mine):
        return dataclasses.replace(
            theirs,
            counts=_sum(mine.counts, theirs.counts, name) if mine else list(theirs.counts),
            fine=None if theirs.fine is None else list(theirs.fine),
            sums=None if theirs.sums is None else list(theirs.sums),
        )
    if _empty(theirs):
        return dataclasses.replace(mine, counts=_sum(mine.counts, theirs.counts, name))
    merged = FeatureCounts(_sum(mine.counts, theirs.counts, name), mine.missing + theirs.missing)
    if _fine(mine) and _fine(theirs):
        # Both counted from rows: the fine grid stays; otherwise part of the rows has no
        # fine counts, and the whole falls back to the serving buckets.
        merged.fine = _sum(mine.fine or [], theirs.fine or [], name)
        merged.sums = _sum(mine.sums or [], theirs.sums or [], name)
        merged.minimum = _extreme(min, mine.minimum, theirs.minimum)
        merged.maximum = _extreme(max, mine.maximum, theirs.maximum)
    return merged


def _fine(counts: FeatureCounts) -> bool:
    return counts.fine is not None and counts.sums is not None


def _extreme(pick: Any, a: float | None, b: float | None) -> float | None:
    # A side with no values (all missing) has no extreme.
    found = [v for v in (a, b) if v is not None]
    return pick(found) if found else None


def _empty(counts: FeatureCounts) -> bool:
    """No rows at all (``current.empty``): merging it keeps the other side's fine grid."""
    return not counts.missing and not any(counts.counts)


def _sum(a: Sequence[Number], b: Sequence[Number], name: str) -> list[Number]:
    if len(a) != len(b):
        raise InputError(f"cannot merge counts of {name!r}: {len(a)} and {len(b)} buckets")
    return [x + y for x, y in zip(a, b, strict=True)]


@dataclasses.dataclass(frozen=True)
class FeatureRule:
    """Per-feature overrides; None keeps the default."""

    method: str | None = None
    threshold: float | None = None
    type: Kind | None = None


@dataclasses.dataclass(frozen=True)
class Rules:
    """How to judge drift (the CRD's ``drift`` rules, snake_case)."""

    features: dict[str, FeatureRule] | None = None  # None: every profile feature
    default_method: str | None = None  # None: sample-size-aware choice (Evidently 0.7)
    thresholds: ThresholdMode = "default"
    drift_share: float = 0.5
    min_samples: int = 500


def rules_from_dict(data: Mapping[str, Any]) -> Rules:
    """``Rules`` from the CRD's camelCase JSON: features [{name, method, threshold, type}],
    defaultMethod, thresholds, driftShare (or the spec's datasetRule: {driftShare}),
    minSamples; the rest of a DriftMonitor spec is refused. Raises ``InputError``."""
    if not isinstance(data, Mapping):
        raise InputError("rules must be a JSON object")
    if "datasetRule" in data:
        # A user may paste the spec's own shape; it means the same rule.
        nested = data["datasetRule"]
        if not isinstance(nested, Mapping) or set(nested) - {"driftShare"}:
            raise InputError('datasetRule must be {"driftShare": <share>}')
        if "driftShare" in data:
            raise InputError("give driftShare once: top level or in datasetRule")
        data = {**{k: v for k, v in data.items() if k != "datasetRule"}, **nested}
    known = {"features", "defaultMethod", "thresholds", "driftShare", "minSamples"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown rules keys {unknown}; known: {sorted(known)}")
    features: dict[str, FeatureRule] | None = None
    if data.get("features") is not None:
        features = {}
        for item in data["features"]:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise InputError("each rules feature needs a name")
            features[item["name"]] = FeatureRule(
                method=_method(item.get("method"), item["name"]),
                threshold=_number(item.get("threshold"), f"threshold of {item['name']}"),
                type=_kind(item.get("type"), item["name"]),
            )
    mode = data.get("thresholds", "default")
    if mode not in get_args(ThresholdMode):
        raise InputError(f"thresholds must be 'default' or 'auto', not {mode!r}")
    share = _number(data.get("driftShare", 0.5), "driftShare")
    if share is None or not 0 < share <= 1:
        raise InputError("driftShare must be in (0, 1]")
    samples = data.get("minSamples", 500)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise InputError("minSamples must be a positive integer")
    return Rules(
        features=features,
        default_method=_method(data.get("defaultMethod"), "defaultMethod"),
        thresholds=mode,
        drift_share=share,
        min_samples=samples,
    )


def _method(value: Any, where: str) -> str | None:
    if value is None or value in METHODS:
        return value  # type: ignore[no-any-return]
    raise InputError(f"unknown method {value!r} for {where}; known: {', '.join(METHODS)}")


def _kind(value: Any, where: str) -> Kind | None:
    if value is None or value in get_args(Kind):
        return value  # type: ignore[no-any-return]
    raise InputError(f"type of {where} must be numeric or categorical, not {value!r}")


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where} must be a number, not {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class FeatureResult:
    """The verdict on one feature (or on the model's output)."""

    name: str
    kind: Kind
    method: str
    score: float | None
    p_value: float | None
    threshold: float | None
    threshold_source: ThresholdSource
    drifted: bool
    verdict: Verdict
    samples: int
    missing_rate_reference: float
    missing_rate_current: float
    missing_drifted: bool
    message: str


@dataclasses.dataclass(frozen=True)
class MultivariateResult:
    """Mean PCA reconstruction error of the current rows against the reference's bound."""

    error: float
    threshold: float
    drifted: bool


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of one check."""

    verdict: ReportVerdict
    samples: int
    total_features: int
    monitored_features: int
    features: list[FeatureResult]
    drifted_features: list[str]
    drift_share: float
    share_threshold: float
    dataset_drifted: bool
    output: FeatureResult | None = None
    multivariate: MultivariateResult | None = None
    estimated_accuracy: float | None = None
    reference_accuracy: float | None = None
