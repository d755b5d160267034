"""A drift verdict in the DriftMonitor's status form, from either way of checking. Pure.

``from_report`` takes the ``toque.drift`` report the operator computed itself (continuous
mode); ``from_compact`` the compact JSON a scheduled check Job wrote to its termination
message (``toque.drift.report.compact``). ``reconcile.driftmonitor`` writes either into the
status the same way. Numbers keep six significant digits, and non-finite ones become null:
the status stays short, valid JSON, and does not change on rounding noise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, get_args

from toque.api import driftmonitor as dm
from toque.drift import types as dtypes

FEATURE_MESSAGE_LIMIT = 200
VERDICTS = ("Healthy", "Drifted", "InsufficientData")


@dataclasses.dataclass(frozen=True)
class Result:
    """What one check found, shaped like the status fields it fills."""

    verdict: str  # one of VERDICTS
    samples: int
    total_features: int
    monitored_features: int
    features: tuple[dm.FeatureScore, ...]
    drifted_features: tuple[str, ...]
    drift_share: float | None
    share_threshold: float | None
    dataset_drifted: bool
    output: dm.OutputDrift | None = None
    multivariate: dm.MultivariateDrift | None = None
    estimated_accuracy: float | None = None
    reference_accuracy: float | None = None
    omitted: int = 0  # features a compact report left out


def number(value: Any) -> float | None:
    """A finite float with six significant digits, or None."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _text(value: Any) -> str | None:
    text = str(value or "").strip()
    return text[:FEATURE_MESSAGE_LIMIT] if text else None


def _score(method: Any, score: Any, p_value: Any) -> float | None:
    """What a threshold is compared with: the p-value of a p-value method, else the score."""
    return number(p_value if method in dm.P_VALUE_METHODS and p_value is not None else score)


def _feature(r: dtypes.FeatureResult) -> dm.FeatureScore:
    return dm.FeatureScore(
        name=r.name,
        kind=r.kind,
        method=r.method,
        score=number(r.score),
        p_value=number(r.p_value),
        threshold=number(r.threshold),
        threshold_source=r.threshold_source,
        drifted=r.drifted,
        verdict=r.verdict,
        missing_rate=number(r.missing_rate_current),
        message=_text(r.message),
    )


def from_report(report: dtypes.Report) -> Result:
    """The status form of a ``toque.drift.check`` report."""
    out, multi = report.output, report.multivariate
    return Result(
        verdict=report.verdict,
        samples=report.samples,
        total_features=report.total_features,
        monitored_features=report.monitored_features,
        features=tuple(_feature(f) for f in report.features),
        drifted_features=tuple(report.drifted_features),
        drift_share=number(report.drift_share),
        share_threshold=number(report.share_threshold),
        dataset_drifted=report.dataset_drifted,
        output=(
            dm.OutputDrift(
                method=out.method,
                score=_score(out.method, out.score, out.p_value),
                threshold=number(out.threshold),
                drifted=out.drifted,
                missing_rate=number(out.missing_rate_current),
                message=_text(out.message),
            )
            if out
            else None
        ),
        multivariate=(
            dm.MultivariateDrift(
                error=number(multi.error), threshold=number(multi.threshold), drifted=multi.drifted
            )
            if multi
            else None
        ),
        estimated_accuracy=number(report.estimated_accuracy),
        reference_accuracy=number(report.reference_accuracy),
    )


def _choice(value: Any, allowed: tuple[Any, ...]) -> Any:
    return value if value in allowed else None


def _compact_feature(item: dict[str, Any]) -> dm.FeatureScore:
    return dm.FeatureScore(
        name=str(item["name"]),
        method=_text(item.get("method")),
        score=number(item.get("score")),
        p_value=number(item.get("p_value")),
        threshold=number(item.get("threshold")),
        threshold_source=_choice(item.get("threshold_source"), get_args(dm.ThresholdSource)),
        drifted=bool(item.get("drifted")),
        verdict=_choice(item.get("verdict"), get_args(dm.Verdict)),
    )


def from_compact(text: str) -> Result:
    """The status form of a check Job's termination message; ``ValueError`` when the text
    is not a compact drift report (a crash's log tail, an error message)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not a drift report: {error}") from error
    if not isinstance(doc, dict) or doc.get("verdict") not in VERDICTS:
        raise ValueError("not a drift report: no verdict")
    try:
        out, multi = doc.get("output"), doc.get("multivariate")
        return Result(
            verdict=str(doc["verdict"]),
            samples=int(doc.get("samples") or 0),
            total_features=int(doc.get("total_features") or 0),
            monitored_features=int(doc.get("monitored_features") or 0),
            features=tuple(_compact_feature(f) for f in doc.get("features") or []),
            drifted_features=tuple(str(n) for n in doc.get("drifted_features") or []),
            drift_share=number(doc.get("drift_share")),
            share_threshold=number(doc.get("share_threshold")),
            dataset_drifted=bool(doc.get("dataset_drifted")),
            output=(
                dm.OutputDrift(
                    method=_text(out.get("method")),
                    score=_score(out.get("method"), out.get("score"), out.get("p_value")),
                    threshold=number(out.get("threshold")),
                    drifted=bool(out.get("drifted")),
                    missing_rate=number(out.get("missing_rate_current")),
                    message=_text(out.get("message")),
                )
                if isinstance(out, dict)
                else None
            ),
            multivariate=(
                dm.MultivariateDrift(
                    error=number(multi.get("error")),
                    threshold=number(multi.get("threshold")),
                    drifted=bool(multi.get("drifted")),
                )
                if isinstance(multi, dict)
                else None
            ),
            estimated_accuracy=number(doc.get("estimated_accuracy")),
            reference_accuracy=number(doc.get("reference_accuracy")),
            omitted=int(doc.get("omitted") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a drift report: {type(error).__name__}: {error}") from error


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def describe(r: Result) -> str:
    """The drifted features by name, the share, and the output and multivariate signals."""
    names = list(r.drifted_features)
    share = f"share {fmt(r.drift_share)}, the dataset drifts at {fmt(r.share_threshold)}"
    if names:
        text = (
            f"drifted features: {', '.join(names)} "
            f"({len(names)} of {r.monitored_features}; {share})"
        )
    else:
        text = f"0 of {r.monitored_features} features drifted ({share})"
    if r.output is not None and r.output.drifted:
        why = f"{r.output.method} {fmt(r.output.score)}"
        text += f"; output drift ({why}{'; ' + r.output.message if r.output.message else ''})"
    if r.multivariate is not None and r.multivariate.drifted:
        text += (
            f"; multivariate drift (error {fmt(r.multivariate.error)} above "
            f"{fmt(r.multivariate.threshold)})"
        )
    if r.omitted:
        text += f"; {r.omitted} more features not reported"
    return text
