"""The evaluation gate's rules on a finished run's metrics."""

from __future__ import annotations

from typing import Any

from toque.api import trainingjob as tj
from toque.reconcile import gate

METRICS = {
    "val_accuracy": 0.95,
    "train_accuracy": 0.99,
    "val_f1": 0.96,
    "fairness.size.small.recall": 0.97,
    "fairness.size.large.recall": 0.90,
}


def rules(**spec: Any) -> tj.EvaluationGate:
    return tj.EvaluationGate.model_validate(spec)


def test_no_gate_passes() -> None:
    assert gate.evaluate(None, {}, None).passed


def test_thresholds() -> None:
    ok = gate.evaluate(
        rules(thresholds=[{"metric": "val_accuracy", "op": ">=", "value": 0.9}]), METRICS, None
    )
    bad = gate.evaluate(
        rules(thresholds=[{"metric": "val_accuracy", "op": ">", "value": 0.95}]), METRICS, None
    )
    missing = gate.evaluate(
        rules(thresholds=[{"metric": "auc", "op": ">", "value": 0.5}]), METRICS, None
    )
    assert ok.passed and not bad.passed
    assert not missing.passed and "not logged" in missing.results[0].message


def test_champion_rule() -> None:
    spec = rules(mustBeatChampion={"metric": "val_f1", "minDelta": 0.01})
    assert gate.evaluate(spec, METRICS, None).passed  # nobody to beat
    assert gate.evaluate(spec, METRICS, tj.Champion(None, {})).passed
    beaten = gate.evaluate(spec, METRICS, tj.Champion("3", {"val_f1": 0.94}))
    assert beaten.passed and "v3" in beaten.results[0].message
    lost = gate.evaluate(spec, METRICS, tj.Champion("3", {"val_f1": 0.955}))
    assert not lost.passed  # better, but not by minDelta
    lower = rules(mustBeatChampion={"metric": "val_f1", "direction": "minimize"})
    assert gate.evaluate(lower, METRICS, tj.Champion("1", {"val_f1": 0.97})).passed


def test_overfitting_gap() -> None:
    assert gate.evaluate(
        rules(maxTrainValidationGap={"metric": "accuracy", "max": 0.05}), METRICS, None
    ).passed
    result = gate.evaluate(
        rules(maxTrainValidationGap={"metric": "accuracy", "max": 0.01}), METRICS, None
    )
    assert not result.passed and "gap = 0.04" in result.results[0].message


def test_fairness_disparity() -> None:
    spec = rules(fairness={"groupColumn": "size", "metric": "recall", "maxDisparity": 0.05})
    result = gate.evaluate(spec, METRICS, None)
    assert not result.passed
    assert "small" in result.results[0].message and "large" in result.results[0].message
    loose = rules(fairness={"groupColumn": "size", "metric": "recall", "maxDisparity": 0.1})
    assert gate.evaluate(loose, METRICS, None).passed
    one_group = gate.evaluate(spec, {"fairness.size.small.recall": 1.0}, None)
    assert not one_group.passed
