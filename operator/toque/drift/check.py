"""Judge current counts against a reference profile: per feature, the output, the dataset.

``check(profile, current, rules)`` is called by ``toque drift check`` and by the drift
monitor; it only reads counts (``current.count`` did the rows), so it costs microseconds
per feature. Rules, in order:

- Too few rows: fewer current rows than ``rules.min_samples`` makes the report
  ``InsufficientData`` and every feature ``InsufficientData`` — never an alarm. A feature
  with enough rows but fewer non-missing values than ``min_samples`` is ``InsufficientData``
  on its own (its missing rate is still judged); one with no values at all is ``Missing``.
- Method: the feature rule's, else ``rules.default_method``, else Evidently 0.7's
  sample-size-aware choice (``stats.default_method``; a numeric feature with at most five
  distinct reference values is tested as categorical on its numeric buckets). A rule
  ``type: categorical`` does the same for any numeric feature; ``type: numeric`` turns that
  off. "ks" and "wasserstein" need numeric buckets.
- Threshold, and its ``threshold_source``: the feature rule's threshold ("fixed"); with
  ``rules.thresholds == "auto"`` and a distance method (psi, jsd, wasserstein), mean + 3 std
  of the profile's chunk scores ("auto"), widened when the current window is smaller than a
  chunk by the ratio by which sampling noise grows (√(chunk/n) for jsd and wasserstein,
  chunk/n for psi), so a small window does not raise false alarms; otherwise the method's
  default ("default": p < 0.05 for ks, chi2, ztest, which ``auto`` keeps too; psi 0.2; jsd
  and wasserstein 0.1). Auto without calibration (a reference too small to chunk) falls
  back to the default, and says so in the message.
- Constant reference (all values in one bucket): verdict "Constant" while the current
  values stay in that bucket; once any leaves it, the method judges as for any feature
  (wasserstein scores a changed constant as infinite).
- Scores on raw rows: counts from ``current.count`` carry the profile's fine grid (rows and
  value sums per fine bucket, the current range), and ks and wasserstein use it
  (``score_feature``); counts without it (the continuous monitor's histograms, a profile
  written before fine grids) are scored on the serving buckets.
- Missing values: ``missing_drifted`` when the current missing rate exceeds the reference's
  by at least ``MISSING_MIN_INCREASE`` (0.05, absolute) and a one-sided two-proportion
  z-test gives p < ``MISSING_P`` (0.05). A feature is ``drifted`` when its distribution
  drifted or its missing rate did.
- Dataset: drifted when the share of drifted features among the monitored ones is at least
  ``rules.drift_share``. The report is "Drifted" when the dataset drifted, the output
  (predictions) drifted, or the multivariate signal fired; "InsufficientData" as above;
  otherwise "Healthy".
- Multivariate (with ``raw``): the PCA signal of ``multivariate`` over the profile's
  numeric features, whatever ``rules.features`` selects (none when the frame lacks one).
- Output drift: the profile's prediction buckets against the current predictions, same
  statistics, default method, thresholds as ``rules.thresholds``.
- Estimated accuracy (CBPE-style, classifiers): the current rows per top-class-probability
  bucket weighted by the reference accuracy of that bucket; buckets the reference never
  filled are skipped (no accuracy to borrow), and their rows do not count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special  # type: ignore[import-untyped]

from toque.drift import multivariate, stats, types

DISTANCE_METHODS = ("psi", "jsd", "wasserstein")
MISSING_P = 0.05
MISSING_MIN_INCREASE = 0.05
_NOISE_POWER = {"psi": 1.0, "jsd": 0.5, "wasserstein": 0.5}


def applicable(method: str, feature: types.FeatureProfile) -> bool:
    """Whether ``method`` can judge ``feature``'s buckets (ks and wasserstein need edges)."""
    if method == "wasserstein":
        return feature.kind == "numeric" and bool(feature.edges) and feature.std is not None
    if method == "ks":
        return feature.kind == "numeric"
    return method in stats.METHODS


def fine_usable(feature: types.FeatureProfile, fine: Any, sums: Any) -> bool:
    """Whether the current fine counts and sums fit the profile's fine grid."""
    return (
        fine is not None
        and sums is not None
        and bool(feature.fine_counts)
        and len(fine) == len(feature.fine_counts) == len(sums)
        and len(feature.fine_means) == len(feature.fine_counts)
    )


def score_feature(
    method: str,
    feature: types.FeatureProfile,
    counts: Sequence[int] | Any,
    *,
    fine: Sequence[int] | Any = None,
    sums: Sequence[float] | Any = None,
    current_range: tuple[float | None, float | None] = (None, None),
) -> tuple[float, float | None]:
    """(score, p-value) of ``counts`` against the feature's reference counts.

    ``fine`` and ``sums`` (current rows and value sums per fine bucket, from raw rows) and
    ``current_range`` (the current minimum and maximum): ks and wasserstein then use the
    profile's fine grid and both sides' bucket means, within a few thousandths of scipy on
    the rows (the serving buckets alone bias a shift's Wasserstein distance by up to half).
    Other methods keep the serving buckets.
    """
    if method in ("ks", "wasserstein") and fine_usable(feature, fine, sums):
        if method == "ks":
            low, high = current_range
            known = None if low is None or high is None else (low, high)
            return stats.ks(
                feature.fine_counts, fine, edges=feature.fine_edges, current_range=known
            )
        rows = np.asarray(fine, dtype=np.float64)
        means = np.asarray(sums, dtype=np.float64) / np.where(rows > 0, rows, 1.0)
        return stats.score(
            method,
            feature.fine_counts,
            fine,
            edges=feature.fine_edges,
            ref_std=feature.std or 0.0,
            bucket_means=(feature.fine_means, means),
        )
    if method != "wasserstein":
        return stats.score(method, feature.counts, counts)
    # Edges that are the feature's distinct values put each value on its edge: exact W1.
    discrete = feature.distinct is not None and feature.distinct == len(feature.edges)
    return stats.score(
        method,
        feature.counts,
        counts,
        edges=feature.edges,
        ref_std=feature.std or 0.0,
        discrete=discrete,
    )


def check(
    profile: types.Profile,
    current: types.CurrentCounts,
    rules: types.Rules,
    *,
    raw: Any = None,
) -> types.Report:
    """The report on ``current`` (``current.count``'s result); ``raw``, the current frame,
    adds the multivariate signal. Raises ``InputError`` for rules that do not fit."""
    selected = _selected(profile, rules)
    insufficient = current.rows < rules.min_samples
    results = []
    for feature, rule in selected:
        counts = current.features.get(feature.name)
        if counts is None:
            raise types.InputError(f"no current counts for feature {feature.name!r}")
        results.append(_judge(feature, counts, rule, rules, insufficient))
    output = None
    if profile.prediction is not None and current.prediction is not None:
        output = _judge(
            profile.prediction, current.prediction, types.FeatureRule(), rules, insufficient
        )
    multi = None
    if raw is not None and profile.multivariate and not insufficient:
        multi = multivariate.score(profile.multivariate, raw)
    drifted = [r.name for r in results if r.drifted]
    share = len(drifted) / len(results) if results else 0.0
    dataset = not insufficient and bool(drifted) and share >= rules.drift_share
    verdict: types.ReportVerdict = "Healthy"
    if insufficient:
        verdict = "InsufficientData"
    elif dataset or (output and output.drifted) or (multi and multi.drifted):
        verdict = "Drifted"
    performance = profile.performance
    return types.Report(
        verdict=verdict,
        samples=current.rows,
        total_features=len(profile.features),
        monitored_features=len(results),
        features=results,
        drifted_features=drifted,
        drift_share=share,
        share_threshold=rules.drift_share,
        dataset_drifted=dataset,
        output=output,
        multivariate=multi,
        estimated_accuracy=(
            estimate_accuracy(performance, current.confidence)
            if performance is not None and current.confidence is not None
            else None
        ),
        reference_accuracy=performance.reference_accuracy if performance else None,
    )


def estimate_accuracy(performance: types.Performance, confidence: Sequence[int]) -> float | None:
    """Sum of current rows x reference accuracy over the buckets the reference filled, / their
    rows; None when no current row falls in such a bucket."""
    weighted = rows = 0.0
    for n, accuracy in zip(confidence, performance.accuracy, strict=False):
        if accuracy is not None and n:
            weighted += n * accuracy
            rows += n
    return weighted / rows if rows else None


def _selected(
    profile: types.Profile, rules: types.Rules
) -> list[tuple[types.FeatureProfile, types.FeatureRule]]:
    if rules.features is None:
        return [(f, types.FeatureRule()) for f in profile.features.values()]
    unknown = [name for name in rules.features if name not in profile.features]
    if unknown:
        raise types.InputError(f"the rules name features the profile lacks: {', '.join(unknown)}")
    return [(profile.features[name], rule) for name, rule in rules.features.items()]


def _method(feature: types.FeatureProfile, rule: types.FeatureRule, rules: types.Rules) -> str:
    if rule.type == "numeric" and feature.kind != "numeric":
        raise types.InputError(
            f"feature {feature.name!r} is categorical in the profile; it has no numeric buckets"
        )
    if rule.method is not None:
        if not applicable(rule.method, feature):
            raise types.InputError(
                f"method {rule.method!r} needs numeric buckets; feature {feature.name!r} is "
                f"{feature.kind}"
            )
        return rule.method
    # A dataset-wide default that cannot judge this feature (ks on a categorical) yields to
    # the sample-size-aware choice.
    if rules.default_method is not None and applicable(rules.default_method, feature):
        return rules.default_method
    kind = rule.type or feature.kind
    distinct = None if rule.type == "numeric" else feature.distinct
    method = stats.default_method(kind, feature.binary, distinct, feature.rows)
    return method if applicable(method, feature) else "jsd"


def _threshold(
    feature: types.FeatureProfile,
    rule: types.FeatureRule,
    rules: types.Rules,
    method: str,
    rows: int,
) -> tuple[float, types.ThresholdSource, str]:
    if rule.threshold is not None:
        return rule.threshold, "fixed", ""
    default = stats.DEFAULT_THRESHOLDS[method]
    if rules.thresholds != "auto" or method not in DISTANCE_METHODS:
        return default, "default", ""
    scores = feature.calibration.get(method, [])
    if len(scores) < 2 or not feature.chunk_rows:
        return default, "default", "no calibration for auto thresholds; default used"
    spread = float(np.mean(scores) + 3 * np.std(scores, ddof=1))
    ratio = max(1.0, feature.chunk_rows / rows) if rows else 1.0
    return spread * ratio ** _NOISE_POWER[method], "auto", ""


def _missing_drifted(reference: types.FeatureProfile, missing: int, rows: int) -> bool:
    """One-sided two-proportion z-test on the missing rates, with a minimum increase."""
    if not rows or not reference.rows:
        return False
    before, after = reference.missing / reference.rows, missing / rows
    if after - before < MISSING_MIN_INCREASE:
        return False
    pooled = (reference.missing + missing) / (reference.rows + rows)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / reference.rows + 1 / rows))
    if spread == 0:
        return False
    return float(special.ndtr(-(after - before) / spread)) < MISSING_P


def _judge(
    feature: types.FeatureProfile,
    counts: types.FeatureCounts,
    rule: types.FeatureRule,
    rules: types.Rules,
    insufficient: bool,
) -> types.FeatureResult:
    method = _method(feature, rule, rules)
    samples = int(sum(counts.counts))
    rows = samples + counts.missing
    threshold, source, note = _threshold(feature, rule, rules, method, rows)
    base: dict[str, Any] = {
        "name": feature.name,
        "kind": rule.type or feature.kind,
        "method": method,
        "threshold": threshold,
        "threshold_source": source,
        "samples": samples,
        "missing_rate_reference": feature.missing_rate,
        "missing_rate_current": counts.missing / rows if rows else 0.0,
    }
    if len(counts.counts) != len(feature.counts):
        raise types.InputError(
            f"feature {feature.name!r}: {len(counts.counts)} current buckets for "
            f"{len(feature.counts)} in the profile"
        )
    if insufficient:
        return _result(base, None, None, "InsufficientData", False, "too few current rows")
    missing = _missing_drifted(feature, counts.missing, rows)
    rates = f"missing rate {feature.missing_rate:.1%} -> {base['missing_rate_current']:.1%}"
    flag = f"{rates}; " if missing else ""
    if not sum(feature.counts):
        return _result(
            base, None, None, "InsufficientData", missing, flag + "no reference values", missing
        )
    if samples == 0:
        return _result(base, None, None, "Missing", missing, flag + "no current values", missing)
    if samples < rules.min_samples:
        message = f"{flag}{samples} values < min samples {rules.min_samples}"
        return _result(base, None, None, "InsufficientData", missing, message, missing)
    filled = [i for i, n in enumerate(feature.counts) if n]
    if len(filled) == 1 and counts.counts[filled[0]] == samples:
        return _result(base, 0.0, None, "Constant", missing, flag + "constant, unchanged", missing)
    score, p_value = score_feature(
        method,
        feature,
        counts.counts,
        fine=counts.fine,
        sums=counts.sums,
        current_range=(counts.minimum, counts.maximum),
    )
    drift = stats.drifted(method, score, p_value, threshold)
    notes = [flag.rstrip("; ")] if missing else []
    unseen = stats.unseen(feature.counts, counts.counts)
    if unseen:
        where = "unseen categories" if feature.kind == "categorical" else "empty reference buckets"
        notes.append(f"{unseen} values in {where}")
    if note:
        notes.append(note)
    verdict: types.Verdict = "Drift" if drift else "NoDrift"
    return _result(base, score, p_value, verdict, drift or missing, "; ".join(notes), missing)


def _result(
    base: dict[str, Any],
    score: float | None,
    p_value: float | None,
    verdict: types.Verdict,
    drifted: bool,
    message: str,
    missing: bool = False,
) -> types.FeatureResult:
    return types.FeatureResult(
        **base,
        score=score,
        p_value=p_value,
        drifted=drifted,
        verdict=verdict,
        missing_drifted=missing,
        message=message,
    )
