"""Continuous drift monitoring from Prometheus: the PromQL to run and what the answers mean.
Pure.

``reconcile.driftmonitor`` asks for an evaluation; ``handlers.driftmonitor`` runs
``queries(target)`` against Prometheus (all at one evaluation time, so every answer sees
the same scrapes) and hands the samples to ``evaluate``, which aligns them with the live
version's reference profile and calls ``toque.drift.check``. The model servers' counters
are summed over pods with ``increase(...[window])``; their series carry the labels
``namespace`` (added by the scrape), ``model`` and ``version`` (the registry version).

``increase`` extrapolates, so bucket counts are rounded; missing values (rows the server
counted but no bucket got) come from the unrounded sums. A histogram whose buckets differ
from the profile's is refused with a message, never compared bucket by bucket blind.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from toque.api import driftmonitor as dm
from toque.drift import check as drift_check
from toque.drift import types as dtypes
from toque.reconcile import analysis

Sample = analysis.Sample
Answers = Mapping[str, Sequence[Sample]]

FEATURES = "features"
CATEGORIES = "categories"
ROWS = "rows"
CLASSES = "classes"
VALUES = "values"
CONFIDENCE = "confidence"
FEEDBACK = "feedback"
USAGE_REQUESTS = "usage-requests"
USAGE_ROWS = "usage-rows"
GROUP_PREDICTIONS = "group-predictions"
FEEDBACK_GROUPS = "feedback-groups"
# Rates of a group smaller than this say more about chance than about the model.
MIN_GROUP_ROWS = 30
_REL_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class Target:
    """Whose traffic to read: one registry version of a model in a namespace."""

    namespace: str
    model: str
    version: str
    window_seconds: int
    bias_feature: str | None = None


class Misaligned(Exception):  # noqa: N818 - a state, as kopf names its own
    """The model server's buckets are not the profile's: no comparison is possible."""


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def queries(t: Target) -> dict[str, str]:
    """Every query of one evaluation, by name."""
    model = f'namespace="{_quote(t.namespace)}",model="{_quote(t.model)}"'
    sel = f'{model},version="{_quote(t.version)}"'
    w = f"{max(int(t.window_seconds), 1)}s"

    def inc(metric: str, by: str, extra: str = "") -> str:
        grouping = f"sum by ({by}) " if by else "sum "
        return f"{grouping}(increase({metric}{{{sel}{extra}}}[{w}]))"

    out = {
        FEATURES: inc("toque_serving_feature_value_bucket", "feature, le"),
        CATEGORIES: inc("toque_serving_feature_category_total", "feature, category"),
        ROWS: inc("toque_serving_rows_total", ""),
        CLASSES: inc("toque_serving_predictions_total", "class"),
        VALUES: inc("toque_serving_prediction_value_bucket", "le"),
        CONFIDENCE: inc("toque_serving_prediction_confidence_bucket", "le"),
        FEEDBACK: inc("toque_serving_feedback_total", "actual, predicted"),
        USAGE_REQUESTS: (
            "sum by (version) (increase(toque_serving_requests_total"
            f'{{{model},endpoint!="feedback"}}[{w}]))'
        ),
        USAGE_ROWS: f"sum by (version) (increase(toque_serving_rows_total{{{model}}}[{w}]))",
    }
    if t.bias_feature is not None:
        feature = f',feature="{_quote(t.bias_feature)}"'
        out[GROUP_PREDICTIONS] = inc(
            "toque_serving_group_predictions_total", "group, class", feature
        )
        out[FEEDBACK_GROUPS] = inc(
            "toque_serving_feedback_group_total", "group, actual, predicted", feature
        )
    return out


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def _finite(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if math.isfinite(s.value)]


def _total(samples: Sequence[Sample]) -> float:
    return sum(max(s.value, 0.0) for s in _finite(samples))


def _histogram(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """Cumulative ``le`` buckets → (upper edge, count) per bucket, in edge order."""
    buckets = sorted((_le(s.labels.get("le", "+Inf")), s.value) for s in _finite(samples))
    out: list[tuple[float, float]] = []
    previous = 0.0
    for edge, cumulative in buckets:
        out.append((edge, max(cumulative - previous, 0.0)))
        previous = max(previous, cumulative)
    return out


def _aligned(
    what: str, buckets: list[tuple[float, float]], edges: Sequence[float]
) -> list[float] | str:
    """Per-bucket counts in the profile's order, or why the buckets differ."""
    if len(buckets) != len(edges) + 1:
        return (
            f"{what}: the model server's histogram has {len(buckets)} buckets, the reference "
            f"profile {len(edges) + 1}"
        )
    for (served, _), edge in zip(buckets[:-1], edges, strict=True):
        if not math.isclose(served, edge, rel_tol=_REL_TOLERANCE, abs_tol=1e-12):
            return (
                f"{what}: the model server's bucket edge {served:g} is not the profile's {edge:g}"
            )
    if not math.isinf(buckets[-1][0]):
        return f"{what}: the model server's histogram has no +Inf bucket"
    return [n for _, n in buckets]


def _categorical(
    samples: Sequence[Sample], label: str, categories: Sequence[str]
) -> list[float] | None:
    """Counts per profile category then ``__other__`` (unknown labels go to other)."""
    if not samples:
        return None
    index = {c: i for i, c in enumerate(categories)}
    out = [0.0] * (len(categories) + 1)
    for s in _finite(samples):
        out[index.get(s.labels.get(label, ""), len(categories))] += max(s.value, 0.0)
    return out


def _by(samples: Sequence[Sample], label: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.labels.get(label, ""), []).append(s)
    return out


def _counts(values: Sequence[float], rows: float) -> dtypes.FeatureCounts:
    counted = sum(values)
    return dtypes.FeatureCounts(
        counts=[round(v) for v in values], missing=max(round(rows - counted), 0)
    )


def _feature_counts(
    feature: dtypes.FeatureProfile,
    histograms: Mapping[str, list[Sample]],
    categories: Mapping[str, list[Sample]],
    rows: float,
) -> dtypes.FeatureCounts | None:
    if feature.kind == "numeric":
        samples = histograms.get(feature.name)
        if not samples:
            return None
        aligned = _aligned(f"feature {feature.name!r}", _histogram(samples), feature.edges)
        if isinstance(aligned, str):
            raise Misaligned(aligned)
        return _counts(aligned, rows)
    values = _categorical(categories.get(feature.name, []), "category", feature.categories)
    return None if values is None else _counts(values, rows)


def current_counts(profile: dtypes.Profile, answers: Answers) -> dtypes.CurrentCounts:
    """The window's traffic in the profile's buckets. Raises ``Misaligned`` when a
    histogram's buckets are not the profile's, or a feature has none while rows came in."""
    rows = _total(answers.get(ROWS, []))
    histograms = _by(answers.get(FEATURES, []), "feature")
    categories = _by(answers.get(CATEGORIES, []), "feature")
    features: dict[str, dtypes.FeatureCounts] = {}
    for name, feature in profile.features.items():
        counts = _feature_counts(feature, histograms, categories, rows)
        if counts is None:
            if round(rows) > 0:
                raise Misaligned(
                    f"feature {name!r} of the reference profile has no histogram on the "
                    "model server"
                )
            counts = dtypes.FeatureCounts([0] * len(feature.counts), 0)
        features[name] = counts
    return dtypes.CurrentCounts(
        rows=round(rows),
        features=features,
        prediction=_prediction(profile.prediction, answers, rows),
        confidence=_confidence(answers.get(CONFIDENCE, [])),
    )


def _prediction(
    prediction: dtypes.FeatureProfile | None, answers: Answers, rows: float
) -> dtypes.FeatureCounts | None:
    """The predictions in the profile's output buckets; None when they cannot be aligned
    (output drift is then left out, the rest of the evaluation stands)."""
    if prediction is None:
        return None
    if prediction.kind == "categorical":
        values = _categorical(answers.get(CLASSES, []), "class", prediction.categories)
        return None if values is None else _counts(values, rows)
    samples = answers.get(VALUES, [])
    aligned = _aligned("predictions", _histogram(samples), prediction.edges) if samples else None
    return None if aligned is None or isinstance(aligned, str) else _counts(aligned, rows)


def _confidence(samples: Sequence[Sample]) -> list[int] | None:
    if not samples:
        return None
    aligned = _aligned("confidence", _histogram(samples), dtypes.CONFIDENCE_EDGES)
    return None if isinstance(aligned, str) else [round(n) for n in aligned]


def accuracy(answers: Answers) -> tuple[float | None, int]:
    """(accuracy on the fed-back labels, labelled rows); accuracy None without labels."""
    total = correct = 0.0
    for s in _finite(answers.get(FEEDBACK, [])):
        total += max(s.value, 0.0)
        if s.labels.get("actual") == s.labels.get("predicted"):
            correct += max(s.value, 0.0)
    labeled = round(total)
    return (correct / total if labeled > 0 else None), labeled


def usage(answers: Answers) -> list[dm.VersionUsage]:
    """Requests and rows per registry version of the model, with each one's share of rows."""
    requests = {v: _total(s) for v, s in _by(answers.get(USAGE_REQUESTS, []), "version").items()}
    rows = {v: _total(s) for v, s in _by(answers.get(USAGE_ROWS, []), "version").items()}
    total = sum(rows.values())
    out = []
    for version in sorted(set(requests) | set(rows), key=_version_key):
        n = rows.get(version, 0.0)
        out.append(
            dm.VersionUsage(
                version=version,
                requests=round(requests.get(version, 0.0)),
                rows=round(n),
                share=round(n / total, 4) if total > 0 else None,
            )
        )
    return out


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def positive_class(profile: dtypes.Profile, seen: Sequence[str]) -> str | None:
    """The class whose share is the positive rate: the model's last class (sklearn's
    ``classes_[1]`` of a binary classifier), else the last one seen."""
    if profile.performance is not None and profile.performance.classes:
        return profile.performance.classes[-1]
    prediction = profile.prediction
    if prediction is not None and prediction.kind == "categorical" and prediction.categories:
        return sorted(prediction.categories)[-1]
    return sorted(seen)[-1] if seen else None


def _spread(rates: Mapping[str, float]) -> float | None:
    return max(rates.values()) - min(rates.values()) if len(rates) >= 2 else None


def bias(
    spec: dm.BiasSpec, profile: dtypes.Profile, answers: Answers, enough_rows: bool
) -> dm.BiasStatus:
    """Positive and error rates per group of ``spec.feature``, and their largest gaps among
    the groups with at least ``MIN_GROUP_ROWS`` rows. ``biased`` stays unset without
    enough rows: never a false alarm."""
    predicted = _finite(answers.get(GROUP_PREDICTIONS, []))
    positive = positive_class(profile, sorted({s.labels.get("class", "") for s in predicted}))
    groups: dict[str, dm.GroupRates] = {}
    positive_rates: dict[str, float] = {}
    for group, samples in _by(predicted, "group").items():
        rows = _total(samples)
        hits = sum(max(s.value, 0.0) for s in samples if s.labels.get("class") == positive)
        rate = hits / rows if rows > 0 else None
        groups[group] = dm.GroupRates(
            group=group, rows=round(rows), positive_rate=_round(rate) if rate is not None else None
        )
        if rate is not None and rows >= MIN_GROUP_ROWS:
            positive_rates[group] = rate
    error_rates: dict[str, float] = {}
    for group, samples in _by(_finite(answers.get(FEEDBACK_GROUPS, [])), "group").items():
        rows = _total(samples)
        wrong = sum(
            max(s.value, 0.0)
            for s in samples
            if s.labels.get("actual") != s.labels.get("predicted")
        )
        entry = groups.setdefault(group, dm.GroupRates(group=group))
        if rows > 0:
            entry.error_rate = _round(wrong / rows)
            if rows >= MIN_GROUP_ROWS:
                error_rates[group] = wrong / rows
    disparity, error_disparity = _spread(positive_rates), _spread(error_rates)
    out = dm.BiasStatus(
        feature=spec.feature,
        positive_class=positive,
        groups=[groups[g] for g in sorted(groups)],
        disparity=_round(disparity) if disparity is not None else None,
        error_disparity=_round(error_disparity) if error_disparity is not None else None,
    )
    measured = [d for d in (disparity, error_disparity) if d is not None]
    if enough_rows and measured:
        out.biased = max(measured) > spec.max_disparity
    return out


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def check(
    profile: dtypes.Profile, answers: Answers, rules: dtypes.Rules
) -> tuple[dtypes.Report, dtypes.CurrentCounts]:
    """The drift report of the window (``Misaligned``, ``toque.drift`` ``InputError``)."""
    current = current_counts(profile, answers)
    return drift_check.check(profile, current, rules), current
