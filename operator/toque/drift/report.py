"""Render a drift ``Report``: Markdown for people, JSON for programs, a compact JSON for a
pod's termination message.

Called by ``toque drift check`` (``--format``, ``--termination-log``) and by the drift
monitor, which reads the compact form back from the finished pod. Keys are the
``types.Report`` field names; scores that are not finite (a changed constant under
wasserstein) are written as null, with the verdict saying what happened.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from toque.drift import stats, types

COMPACT_LIMIT = 4000  # Kubernetes keeps 4096 bytes of a termination message
_COMPACT_FIELDS = (
    "name",
    "method",
    "score",
    "p_value",
    "threshold",
    "threshold_source",
    "verdict",
    "drifted",
    "missing_drifted",
)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_dict(report: types.Report) -> dict[str, Any]:
    """The whole report, JSON-ready (``json.dumps`` works on it without options)."""
    cleaned: dict[str, Any] = _clean(dataclasses.asdict(report))
    return cleaned


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf"
    return f"{value:.4g}"


def _score(result: types.FeatureResult) -> str:
    if result.method in stats.P_VALUE_METHODS and result.p_value is not None:
        return f"p={_number(result.p_value)}"
    return _number(result.score)


def _threshold(result: types.FeatureResult) -> str:
    if result.threshold is None:
        return "-"
    if result.method in stats.P_VALUE_METHODS:
        return f"p<{_number(result.threshold)}"
    return f"≥{_number(result.threshold)}"


def _verdict(result: types.FeatureResult) -> str:
    text = f"**{result.verdict}**" if result.verdict == "Drift" else result.verdict
    if result.missing_drifted:
        text += f", missing {result.missing_rate_reference:.1%} → {result.missing_rate_current:.1%}"
    return text


def _row(result: types.FeatureResult) -> str:
    cells = [
        result.name,
        result.kind,
        result.method,
        _score(result),
        _threshold(result),
        result.threshold_source,
        _verdict(result),
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_markdown(report: types.Report) -> str:
    """A heading with the verdict, a summary, and one table row per feature (then the
    output, when predictions were checked)."""
    lines = [
        f"## Drift report: {report.verdict}",
        "",
        f"- samples: {report.samples}",
        f"- drifted features: {len(report.drifted_features)} of {report.monitored_features} "
        f"monitored ({report.drift_share:.0%}; the dataset drifts at "
        f"{report.share_threshold:.0%}): {', '.join(report.drifted_features) or 'none'}",
        f"- dataset drift: {'yes' if report.dataset_drifted else 'no'}",
    ]
    if report.output is not None:
        lines.append(f"- output drift: {report.output.verdict} ({report.output.method})")
    if report.multivariate is not None:
        m = report.multivariate
        lines.append(
            f"- multivariate (PCA reconstruction error): {_number(m.error)} against "
            f"{_number(m.threshold)}: {'drift' if m.drifted else 'no drift'}"
        )
    if report.estimated_accuracy is not None:
        reference = report.reference_accuracy
        lines.append(
            f"- estimated accuracy: {report.estimated_accuracy:.3f}"
            + (f" (reference {reference:.3f})" if reference is not None else "")
        )
    lines += [
        "",
        "| feature | type | method | score | threshold | threshold source | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_row(result) for result in report.features]
    if report.output is not None:
        lines.append(_row(report.output))
    return "\n".join(lines) + "\n"


def compact(report: types.Report, limit: int = COMPACT_LIMIT) -> str:
    """The summary and the features (drifted first) as ASCII JSON of at most ``limit``
    characters: features that do not fit are left out and counted in ``omitted``."""
    head: dict[str, Any] = {
        "verdict": report.verdict,
        "samples": report.samples,
        "total_features": report.total_features,
        "monitored_features": report.monitored_features,
        "drift_share": report.drift_share,
        "share_threshold": report.share_threshold,
        "dataset_drifted": report.dataset_drifted,
        "output": _compact_feature(report.output) if report.output else None,
        "multivariate": dataclasses.asdict(report.multivariate) if report.multivariate else None,
        "estimated_accuracy": report.estimated_accuracy,
        "reference_accuracy": report.reference_accuracy,
        "drifted_features": list(report.drifted_features),
    }
    ordered = sorted(report.features, key=lambda r: not r.drifted)  # stable: profile order
    entries = [_compact_feature(r) for r in ordered]

    def render(kept: int, names: int) -> str:
        body = dict(head, drifted_features=head["drifted_features"][:names])
        body["features"] = entries[:kept]
        body["omitted"] = len(entries) - kept
        if names < len(head["drifted_features"]):
            body["omitted_drifted_names"] = len(head["drifted_features"]) - names
        return json.dumps(_clean(body), separators=(",", ":"), ensure_ascii=True)

    names = len(head["drifted_features"])
    # The most features that fit: a binary search over how many are kept.
    low, high = 0, len(entries)
    while low < high:
        middle = (low + high + 1) // 2
        if len(render(middle, names)) <= limit:
            low = middle
        else:
            high = middle - 1
    text = render(low, names)
    while len(text) > limit and names:
        names = names // 2
        text = render(0, names)
    return text


def _compact_feature(result: types.FeatureResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in _COMPACT_FIELDS}
