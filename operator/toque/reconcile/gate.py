"""The evaluation gate: pure checks of a finished run's metrics. Called by
``reconcile.trainingjob`` when the run has succeeded.

Metric naming conventions the gate relies on (the trainer runtime and the examples follow
them): ``train_<m>`` and ``val_<m>`` for the overfitting gap, and
``fairness.<column>.<group>.<m>`` for per-group values.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from toque.api import trainingjob as tj

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def _threshold(rule: tj.MetricThreshold, metrics: dict[str, float]) -> tj.GateResult:
    name = f"threshold {rule.metric} {rule.op} {rule.value:g}"
    value = metrics.get(rule.metric)
    if value is None:
        return tj.GateResult(rule=name, passed=False, message=f"metric {rule.metric} not logged")
    ok = _OPS[rule.op](value, rule.value)
    return tj.GateResult(rule=name, passed=ok, message=f"{rule.metric} = {value:.4g}")


def _champion(
    rule: tj.ChampionRule, metrics: dict[str, float], champ: tj.Champion | None
) -> tj.GateResult:
    name = f"beat champion ({rule.alias}) on {rule.metric}"
    value = metrics.get(rule.metric)
    if value is None:
        return tj.GateResult(rule=name, passed=False, message=f"metric {rule.metric} not logged")
    if champ is None or champ.version is None:
        return tj.GateResult(rule=name, passed=True, message=f"no model holds {rule.alias} yet")
    theirs = champ.metrics.get(rule.metric)
    if theirs is None:
        return tj.GateResult(
            rule=name,
            passed=True,
            message=f"champion v{champ.version} has no {rule.metric}; nothing to beat",
        )
    if rule.direction == "maximize":
        ok = value >= theirs + rule.min_delta
    else:
        ok = value <= theirs - rule.min_delta
    return tj.GateResult(
        rule=name,
        passed=ok,
        message=f"{value:.4g} vs champion v{champ.version} {theirs:.4g} "
        f"({rule.direction}, min delta {rule.min_delta:g})",
    )


def _gap(rule: tj.GapRule, metrics: dict[str, float]) -> tj.GateResult:
    name = f"train/validation gap of {rule.metric} <= {rule.max:g}"
    train, val = metrics.get(f"train_{rule.metric}"), metrics.get(f"val_{rule.metric}")
    if train is None or val is None:
        return tj.GateResult(
            rule=name,
            passed=False,
            message=f"needs train_{rule.metric} and val_{rule.metric}",
        )
    gap = abs(train - val)
    return tj.GateResult(rule=name, passed=gap <= rule.max, message=f"gap = {gap:.4g}")


def _fairness(rule: tj.FairnessRule, metrics: dict[str, float]) -> tj.GateResult:
    metric = rule.metric.removeprefix("val_")
    name = f"{metric} disparity across {rule.group_column} <= {rule.max_disparity:g}"
    prefix = f"fairness.{rule.group_column}."
    values = {
        k[len(prefix) : -len(metric) - 1]: v
        for k, v in metrics.items()
        if k.startswith(prefix) and k.endswith(f".{metric}")
    }
    if len(values) < 2:
        return tj.GateResult(
            rule=name,
            passed=False,
            message=f"needs {metric} for at least two groups of {rule.group_column}",
        )
    worst, best = min(values, key=values.__getitem__), max(values, key=values.__getitem__)
    disparity = values[best] - values[worst]
    return tj.GateResult(
        rule=name,
        passed=disparity <= rule.max_disparity,
        message=f"{disparity:.4g} ({best} {values[best]:.4g} vs {worst} {values[worst]:.4g})",
    )


def evaluate(
    gate: tj.EvaluationGate | None, metrics: dict[str, float], champion: tj.Champion | None
) -> tj.GateStatus:
    """Every rule's result; the gate passes when all pass (no rules: it passes)."""
    if gate is None:
        return tj.GateStatus(passed=True, results=[])
    results = [_threshold(t, metrics) for t in gate.thresholds or []]
    if gate.must_beat_champion:
        results.append(_champion(gate.must_beat_champion, metrics, champion))
    if gate.max_train_validation_gap:
        results.append(_gap(gate.max_train_validation_gap, metrics))
    if gate.fairness:
        results.append(_fairness(gate.fairness, metrics))
    return tj.GateStatus(passed=all(r.passed for r in results), results=results)
