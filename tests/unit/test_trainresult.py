"""The trainer's termination message fits Kubernetes' 4 KiB and reads back."""

from __future__ import annotations

from toque.api import trainresult


def test_round_trip() -> None:
    result = trainresult.TrainResult(
        run_id="a" * 32,
        metrics={"val_accuracy": 0.9},
        model_uri="models:/m-1",
        model_digest="sha256:" + "b" * 64,
    )
    back = trainresult.decode(trainresult.encode(result))
    assert back == result


def test_too_many_metrics_keep_the_gate_ones() -> None:
    metrics = {f"metric_{i:04d}": float(i) for i in range(500)}
    result = trainresult.TrainResult(run_id="r", metrics=metrics)
    text = trainresult.encode(result, keep={"metric_0007"})
    assert len(text) <= trainresult.LIMIT
    back = trainresult.decode(text)
    assert back is not None and back.metrics == {"metric_0007": 7.0}
    assert back.metrics_truncated


def test_log_tails_are_not_results() -> None:
    assert trainresult.decode("Traceback (most recent call last): ...") is None
    assert trainresult.decode('{"unrelated": true}') is None
