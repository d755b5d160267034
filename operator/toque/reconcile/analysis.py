"""Canary analysis: the PromQL each check runs and how its answer becomes pass/fail. Pure.

``reconcile.modelversion`` asks for an analysis when one is due; ``handlers.modelversion``
runs the ``queries`` against Prometheus and hands the raw samples (or the error Prometheus
gave for a query) back to ``evaluate_all``. A
check with no data (no traffic yet, a series not scraped yet) is inconclusive: it neither
passes nor counts as a failure, so a quiet canary waits instead of being promoted blind.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence

from toque.api import modelversion as mv
from toque.api import validators

ERROR_RATE = "error-rate"
P99_LATENCY = "p99-latency"
PREDICTION_SHIFT = "prediction-shift"
# Fewer predictions on either side leave the prediction shift inconclusive (the step waits).
MIN_SHIFT_PREDICTIONS = 20
# The error rate is judged over at least this many canary requests; with fewer it fails
# only once its errors would break the limit over this many whatever the rest return.
MIN_ERROR_REQUESTS = 20
# A p99 from fewer requests is their slowest one (a cold start, one GC pause): it waits.
MIN_LATENCY_REQUESTS = 20

_COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
# The CRD admits exactly these (api.validators.SUCCESS_CONDITION_PATTERN, one number grammar).
_CONDITION = re.compile(rf"^result\s*(<=|>=|==|!=|<|>)\s*({validators.SUCCESS_NUMBER})$")


@dataclasses.dataclass(frozen=True)
class Target:
    """Whose metrics to compare: the canary's version against the stable's."""

    namespace: str
    model: str
    canary_version: str
    stable_version: str | None
    window_seconds: int
    # The stable's reference predictions reach further back: at weight 100 it takes no
    # traffic, and its distribution from before the canary is the one to compare with.
    stable_window_seconds: int | None = None


@dataclasses.dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclasses.dataclass(frozen=True)
class Check:
    """One named check: its queries (by role) and its failure limit."""

    name: str
    queries: Mapping[str, str]
    failure_limit: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool | None  # None: inconclusive
    value: float | None
    message: str
    # The check itself is broken (a condition or answer it cannot evaluate): no retry helps.
    invalid: bool = False


def _selector(t: Target, version: str) -> str:
    return (
        f'namespace="{_quote(t.namespace)}",model="{_quote(t.model)}",version="{_quote(version)}"'
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def checks(analysis: mv.Analysis, target: Target) -> list[Check]:
    """Every check the spec asks for, built-ins first."""
    builtins = analysis.builtins or mv.BuiltinChecks()
    w = f"{target.window_seconds}s"
    canary = _selector(target, target.canary_version)
    out: list[Check] = []
    if builtins.max_error_rate is not None:
        # Counts, not a rate: how many requests the rate stands on decides whether it is
        # evidence. `or vector(0)`: no 5xx series at all means no errors, not no data.
        served = f'toque_serving_requests_total{{{canary},endpoint!="feedback"'
        queries = {
            "errors": f'sum(increase({served},code=~"5.."}}[{w}])) or vector(0)',
            "requests": f"sum(increase({served}}}[{w}]))",
        }
        out.append(Check(ERROR_RATE, queries, analysis.failure_limit))
    if builtins.max_p99_latency_ms is not None:
        query = (
            "1000 * histogram_quantile(0.99, sum by (le) "
            f"(rate(toque_serving_request_duration_seconds_bucket{{{canary}}}[{w}])))"
        )
        count = f"sum(increase(toque_serving_request_duration_seconds_count{{{canary}}}[{w}]))"
        out.append(Check(P99_LATENCY, {"value": query, "requests": count}, analysis.failure_limit))
    if builtins.max_prediction_shift is not None and target.stable_version:
        stable = _selector(target, target.stable_version)
        queries = {}
        stable_w = f"{max(target.stable_window_seconds or 0, target.window_seconds)}s"
        for role, sel, span in (("canary", canary, w), ("stable", stable, stable_w)):
            queries[f"{role}-classes"] = (
                f"sum by (class) (increase(toque_serving_predictions_total{{{sel}}}[{span}]))"
            )
            queries[f"{role}-buckets"] = (
                f"sum by (le) (increase(toque_serving_prediction_value_bucket{{{sel}}}[{span}]))"
            )
        out.append(Check(PREDICTION_SHIFT, queries, analysis.failure_limit))
    for metric in analysis.metrics or []:
        limit = metric.failure_limit if metric.failure_limit is not None else analysis.failure_limit
        out.append(Check(metric.name, {"value": render(metric.query, target)}, limit))
    return out


def render(query: str, target: Target) -> str:
    """User queries may name the rollout's parties instead of hard-coding versions."""
    values = {
        "namespace": target.namespace,
        "model": target.model,
        "canary": target.canary_version,
        "stable": target.stable_version or "",
        "window": f"{target.window_seconds}s",
    }
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


def _scalar(samples: Sequence[Sample]) -> tuple[float | None, str]:
    if not samples:
        return None, "no data"
    if len(samples) > 1:
        return math.nan, f"query returned {len(samples)} series, expected one"
    value = samples[0].value
    if math.isnan(value):
        return None, "no data (NaN)"
    return value, ""


def evaluate(
    check: Check,
    results: Mapping[str, Sequence[Sample]],
    analysis: mv.Analysis,
) -> Outcome:
    """Pass, fail or inconclusive for one check from its query results."""
    builtins = analysis.builtins or mv.BuiltinChecks()
    if check.name == PREDICTION_SHIFT:
        return _shift(check, results, builtins.max_prediction_shift or 0.0)
    if check.name == ERROR_RATE and builtins.max_error_rate is not None:
        return _error_rate(check, results, builtins.max_error_rate)
    value, problem = _scalar(results.get("value", []))
    if value is None:
        return Outcome(check.name, None, None, problem)
    if math.isnan(value):
        return Outcome(check.name, False, None, problem)
    if check.name == P99_LATENCY and builtins.max_p99_latency_ms is not None:
        text = f"p99 {value:.1f} ms (max {builtins.max_p99_latency_ms} ms)"
        requests, _ = _scalar(results.get("requests", []))
        served = round(requests) if requests is not None and math.isfinite(requests) else 0
        if served < MIN_LATENCY_REQUESTS:
            return Outcome(
                check.name,
                None,
                value,
                f"{text} of {served} requests: judged from {MIN_LATENCY_REQUESTS} requests",
            )
        return Outcome(check.name, value <= builtins.max_p99_latency_ms, value, text)
    metric = next((m for m in analysis.metrics or [] if m.name == check.name), None)
    if metric is None:
        return Outcome(check.name, None, value, "unknown check")
    ok = satisfies(metric.success_condition, value)
    verdict = "meets" if ok else "fails"
    return Outcome(check.name, ok, value, f"{value:g} {verdict} {metric.success_condition!r}")


def evaluate_safely(
    check: Check,
    results: Mapping[str, Sequence[Sample]],
    analysis: mv.Analysis,
) -> Outcome:
    """``evaluate``, with any error turned into an invalid outcome instead of an exception:
    a check the operator cannot evaluate must stop its rollout with a reason, not make the
    reconcile raise on every retry."""
    try:
        return evaluate(check, results, analysis)
    except Exception as error:  # any bug or bad input in one check must not stall the model
        message = f"cannot evaluate the check: {type(error).__name__}: {error}"
        return Outcome(check.name, False, None, message, invalid=True)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What Prometheus answered for one check: its samples by query role, or the error of
    a query it refused."""

    samples: Mapping[str, Sequence[Sample]] = dataclasses.field(default_factory=dict)
    error: str | None = None


def evaluate_all(
    checks: Sequence[Check], answers: Mapping[str, Answer], analysis: mv.Analysis
) -> dict[str, Outcome]:
    """The outcome of every answered check (an unanswered one is left out: not measured).

    A query Prometheus refused stays refused: a failed check, not a wait. Never raises.
    """
    out: dict[str, Outcome] = {}
    for check in checks:
        answer = answers.get(check.name)
        if answer is None:
            continue
        if answer.error is not None:
            out[check.name] = Outcome(check.name, False, None, f"bad query: {answer.error}")
        else:
            out[check.name] = evaluate_safely(check, answer.samples, analysis)
    return out


def satisfies(condition: str, value: float) -> bool:
    """``result < 0.05`` and friends; the CRD pattern already admitted only these shapes."""
    match = _CONDITION.match(condition.strip())
    if not match:
        raise ValueError(f"unsupported successCondition {condition!r}")
    return _COMPARATORS[match.group(1)](value, float(match.group(2)))


def _distribution(results: Mapping[str, Sequence[Sample]], role: str) -> dict[str, float]:
    classes = {s.labels.get("class", ""): s.value for s in results.get(f"{role}-classes", [])}
    classes = {k: v for k, v in classes.items() if not math.isnan(v) and v > 0}
    if classes:
        return classes
    # Regressors: cumulative histogram buckets → per-bin counts.
    buckets = sorted(
        ((_le(s.labels.get("le", "+Inf")), s.value) for s in results.get(f"{role}-buckets", [])),
        key=lambda item: item[0],
    )
    out: dict[str, float] = {}
    previous = 0.0
    for edge, cumulative in buckets:
        if math.isnan(cumulative):
            continue
        out[str(edge)] = max(cumulative - previous, 0.0)
        previous = max(previous, cumulative)
    return {k: v for k, v in out.items() if v > 0}


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf") else float(text)


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2, so 0..1) of two count distributions."""
    keys = set(p) | set(q)
    sp, sq = sum(p.values()), sum(q.values())
    if sp <= 0 or sq <= 0:
        raise ValueError("empty distribution")
    divergence = 0.0
    for k in keys:
        a, b = p.get(k, 0.0) / sp, q.get(k, 0.0) / sq
        m = (a + b) / 2
        if a > 0:
            divergence += 0.5 * a * math.log2(a / m)
        if b > 0:
            divergence += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(divergence, 0.0))


def _error_rate(check: Check, results: Mapping[str, Sequence[Sample]], limit: float) -> Outcome:
    requests, problem = _scalar(results.get("requests", []))
    errors, error_problem = _scalar(results.get("errors", []))
    if requests is None or math.isnan(requests):
        return Outcome(check.name, None, None, problem or "no data")
    if errors is None or math.isnan(errors):
        return Outcome(check.name, None, None, f"errors: {error_problem or 'no data'}")
    # increase() extrapolates to the window's edges: whole requests are what was served.
    served, failed = round(max(requests, 0.0)), round(max(errors, 0.0))
    if served == 0:
        return Outcome(check.name, None, None, "no canary requests in the window")
    failed = min(failed, served)
    value = failed / served
    text = f"error rate {value:.4f} ({failed} of {served} requests; max {limit})"
    if served >= MIN_ERROR_REQUESTS:
        return Outcome(check.name, value <= limit, value, text)
    if failed > limit * MIN_ERROR_REQUESTS:
        # Beyond the limit over the first MIN_ERROR_REQUESTS whatever the rest return.
        return Outcome(check.name, False, value, text)
    # One failed request among three is a 33 % rate and says little: the step waits.
    return Outcome(
        check.name,
        None,
        value,
        f"{text}: judged from {MIN_ERROR_REQUESTS} requests",
    )


def _shift(check: Check, results: Mapping[str, Sequence[Sample]], limit: float) -> Outcome:
    canary = _distribution(results, "canary")
    stable = _distribution(results, "stable")
    if not canary or not stable:
        side = "canary" if not canary else "stable"
        return Outcome(check.name, None, None, f"no predictions from the {side} yet")
    for side, counts in (("canary", canary), ("stable", stable)):
        seen = sum(counts.values())
        if seen < MIN_SHIFT_PREDICTIONS:
            # A handful of predictions is noise: 3 of one class against a 60/40 stable is
            # a distance of 0.5, and a rollback of a good version.
            return Outcome(
                check.name,
                None,
                None,
                f"only {seen:.0f} {side} predictions in the window; the shift is measured "
                f"from {MIN_SHIFT_PREDICTIONS}",
            )
    value = js_distance(canary, stable)
    return Outcome(
        check.name,
        value <= limit,
        value,
        f"Jensen-Shannon distance {value:.3f} of canary vs stable predictions (max {limit})",
    )
