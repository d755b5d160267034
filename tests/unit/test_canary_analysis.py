"""Canary analysis: the PromQL each check sends and how answers become verdicts."""

from __future__ import annotations

import math

import pytest

from toque.api import modelversion as mv
from toque.reconcile import analysis as an

TARGET = an.Target("ns", "iris", canary_version="2", stable_version="1", window_seconds=30)


def spec(**kwargs: object) -> mv.Analysis:
    return mv.Analysis.model_validate(kwargs)


def sample(value: float, **labels: str) -> an.Sample:
    return an.Sample(labels=labels, value=value)


def test_builtins_query_only_the_canary_version_of_this_model_in_this_namespace() -> None:
    checks = an.checks(
        spec(builtins={"maxErrorRate": 0.01, "maxP99LatencyMs": 50, "maxPredictionShift": 0.2}),
        TARGET,
    )
    assert [c.name for c in checks] == [an.ERROR_RATE, an.P99_LATENCY, an.PREDICTION_SHIFT]
    errors, requests = checks[0].queries["errors"], checks[0].queries["requests"]
    for query in (errors, requests):
        assert 'namespace="ns",model="iris",version="2"' in query and "[30s]" in query
        assert 'endpoint!="feedback"' in query  # true labels sent back are not traffic
    assert 'code=~"5.."' in errors and "or vector(0)" in errors
    assert "code" not in requests
    shift = checks[2].queries
    assert 'version="1"' in shift["stable-classes"] and 'version="2"' in shift["canary-classes"]
    assert "[30s]" in shift["stable-classes"]


def test_the_stables_reference_reaches_back_past_the_canarys_window() -> None:
    """At weight 100 the stable takes no traffic: its earlier predictions are the reference."""
    target = an.Target("ns", "iris", "2", "1", window_seconds=30, stable_window_seconds=900)
    (check,) = an.checks(spec(builtins={"maxErrorRate": None, "maxPredictionShift": 0.2}), target)
    assert "[900s]" in check.queries["stable-classes"]
    assert "[30s]" in check.queries["canary-classes"]


def test_default_builtins_check_the_error_rate_only() -> None:
    assert [c.name for c in an.checks(spec(), TARGET)] == [an.ERROR_RATE]


def test_user_queries_get_the_rollout_parties_filled_in() -> None:
    analysis = spec(
        metrics=[
            {
                "name": "confidence",
                "query": 'avg(x{version="{{canary}}",namespace="{{namespace}}"}[{{window}}])',
                "successCondition": "result >= 0.9",
                "failureLimit": 2,
            }
        ]
    )
    check = an.checks(analysis, TARGET)[-1]
    assert check.queries["value"] == 'avg(x{version="2",namespace="ns"}[30s])'
    assert check.failure_limit == 2
    good = an.evaluate(check, {"value": [sample(0.95)]}, analysis)
    bad = an.evaluate(check, {"value": [sample(0.5)]}, analysis)
    assert good.passed is True and bad.passed is False and "0.5" in bad.message


def error_answer(errors: float, requests: float) -> dict[str, list[an.Sample]]:
    return {"errors": [sample(errors)], "requests": [sample(requests)]}


def test_error_rate_verdicts_and_no_traffic_is_inconclusive() -> None:
    analysis = spec(builtins={"maxErrorRate": 0.05})
    (check,) = an.checks(analysis, TARGET)
    assert an.evaluate(check, error_answer(1, 100), analysis).passed is True
    failed = an.evaluate(check, error_answer(20, 100), analysis)
    assert failed.passed is False and failed.value == pytest.approx(0.2)
    assert "20 of 100 requests" in failed.message
    assert an.evaluate(check, {"errors": [], "requests": []}, analysis).passed is None
    assert an.evaluate(check, error_answer(0, 0), analysis).passed is None
    assert an.evaluate(check, error_answer(0, math.nan), analysis).passed is None


def test_one_failed_request_among_a_few_waits_for_more_traffic_instead_of_failing() -> None:
    analysis = spec(builtins={"maxErrorRate": 0.05})
    (check,) = an.checks(analysis, TARGET)
    few = an.evaluate(check, error_answer(1, 3), analysis)
    assert few.passed is None and "1 of 3 requests" in few.message
    assert f"from {an.MIN_ERROR_REQUESTS} requests" in few.message
    assert an.evaluate(check, error_answer(0, 5), analysis).passed is None
    # Once enough requests came in, the same single error is within the limit.
    assert an.evaluate(check, error_answer(1, an.MIN_ERROR_REQUESTS), analysis).passed is True


def test_errors_that_break_the_limit_whatever_follows_fail_before_the_minimum() -> None:
    analysis = spec(builtins={"maxErrorRate": 0.05})
    (check,) = an.checks(analysis, TARGET)
    # 2 errors are 10 % of 20 requests, even if the next 17 all succeed.
    out = an.evaluate(check, error_answer(2, 3), analysis)
    assert out.passed is False and out.value == pytest.approx(2 / 3)
    strict = spec(builtins={"maxErrorRate": 0})
    (check,) = an.checks(strict, TARGET)
    assert an.evaluate(check, error_answer(1, 1), strict).passed is False


def test_p99_latency_is_judged_from_twenty_requests_and_waits_before() -> None:
    analysis = spec(builtins={"maxErrorRate": None, "maxP99LatencyMs": 50})
    (check,) = an.checks(analysis, TARGET)
    assert "request_duration_seconds_bucket" in check.queries["value"]
    assert "request_duration_seconds_count" in check.queries["requests"]
    assert 'version="2"' in check.queries["requests"] and "[30s]" in check.queries["requests"]

    def answer(p99_ms: float, requests: float) -> dict[str, list[an.Sample]]:
        return {"value": [sample(p99_ms)], "requests": [sample(requests)]}

    assert an.evaluate(check, answer(12.0, 200), analysis).passed is True
    slow = an.evaluate(check, answer(80.0, 200), analysis)
    assert slow.passed is False and "p99 80.0 ms" in slow.message
    # A cold start's one slow request is the p99 of three requests: the step waits.
    cold = an.evaluate(check, answer(900.0, 3), analysis)
    assert cold.passed is None and "of 3 requests" in cold.message
    assert an.evaluate(check, {"value": [sample(80.0)], "requests": []}, analysis).passed is None
    assert an.evaluate(check, answer(math.nan, 0), analysis).passed is None


def test_extrapolated_counts_are_read_as_whole_requests() -> None:
    analysis = spec(builtins={"maxErrorRate": 0.05})
    (check,) = an.checks(analysis, TARGET)
    # increase() stretches 40 requests seen over 28 s of a 30 s window to 42.86.
    out = an.evaluate(check, error_answer(2.143, 42.86), analysis)
    assert out.passed is True and "2 of 43 requests" in out.message


def test_a_query_answering_several_series_fails_with_a_clear_message() -> None:
    analysis = spec(metrics=[{"name": "m", "query": "x", "successCondition": "result < 1"}])
    check = an.checks(analysis, TARGET)[-1]
    out = an.evaluate(check, {"value": [sample(0), sample(0)]}, analysis)
    assert out.passed is False and "2 series" in out.message


def test_prediction_shift_compares_class_distributions() -> None:
    analysis = spec(builtins={"maxErrorRate": None, "maxPredictionShift": 0.2})
    (check,) = an.checks(analysis, TARGET)
    same = {
        "canary-classes": [sample(50, **{"class": "0"}), sample(50, **{"class": "1"})],
        "stable-classes": [sample(500, **{"class": "0"}), sample(480, **{"class": "1"})],
    }
    assert an.evaluate(check, same, analysis).passed is True
    flipped = {
        "canary-classes": [sample(95, **{"class": "0"}), sample(5, **{"class": "1"})],
        "stable-classes": [sample(10, **{"class": "0"}), sample(90, **{"class": "1"})],
    }
    out = an.evaluate(check, flipped, analysis)
    assert out.passed is False and out.value is not None and out.value > 0.5
    assert an.evaluate(check, {"stable-classes": same["stable-classes"]}, analysis).passed is None


def test_prediction_shift_from_a_handful_of_canary_predictions_is_inconclusive() -> None:
    analysis = spec(builtins={"maxErrorRate": None, "maxPredictionShift": 0.5})
    (check,) = an.checks(analysis, TARGET)
    few = {
        "canary-classes": [sample(3, **{"class": "1"})],
        "stable-classes": [sample(60, **{"class": "0"}), sample(40, **{"class": "1"})],
    }
    out = an.evaluate(check, few, analysis)
    assert out.passed is None and "only 3 canary predictions" in out.message
    enough = {**few, "canary-classes": [sample(12, **{"class": "0"}), sample(8, **{"class": "1"})]}
    assert an.evaluate(check, enough, analysis).passed is True


def test_prediction_shift_of_regressors_uses_histogram_buckets() -> None:
    analysis = spec(builtins={"maxErrorRate": None, "maxPredictionShift": 0.1})
    (check,) = an.checks(analysis, TARGET)

    def buckets(*cumulative: float) -> list[an.Sample]:
        edges = ["1", "2", "+Inf"]
        return [sample(v, le=e) for v, e in zip(cumulative, edges, strict=True)]

    out = an.evaluate(
        check,
        {"canary-buckets": buckets(10, 20, 30), "stable-buckets": buckets(10, 20, 30)},
        analysis,
    )
    assert out.passed is True and out.value == pytest.approx(0.0)


def test_js_distance_bounds() -> None:
    assert an.js_distance({"a": 1}, {"a": 5}) == pytest.approx(0.0)
    assert an.js_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("result < 0.05", 0.01, True),
        ("result>=1", 0.5, False),
        ("result == -2", -2, True),
        ("result != 3e-2", 0.03, False),
    ],
)
def test_success_conditions(condition: str, value: float, expected: bool) -> None:
    assert an.satisfies(condition, value) is expected


@pytest.mark.parametrize("condition", ["result < 1.2.3", "result < .", "result < -", "result<1e"])
def test_unparseable_success_conditions_raise_value_error(condition: str) -> None:
    with pytest.raises(ValueError, match="successCondition"):
        an.satisfies(condition, 1.0)


def test_an_unparseable_condition_is_an_invalid_outcome_not_an_exception() -> None:
    analysis = mv.Analysis.model_construct(
        interval="10s",
        failure_limit=0,
        builtins=mv.BuiltinChecks(max_error_rate=None),
        metrics=[
            mv.PrometheusMetric.model_construct(
                name="m", query="q", success_condition="result < 1.2.3", failure_limit=None
            )
        ],
    )
    check = an.Check("m", {"value": "q"}, 0)
    out = an.evaluate_safely(check, {"value": [an.Sample({}, 0.5)]}, analysis)
    assert out.invalid and out.passed is False and "1.2.3" in out.message


@pytest.mark.parametrize("number", ["0.05", ".5", "5.", "-3", "+2", "1e-3", "2.E+4", "10"])
def test_success_condition_numbers_python_reads(number: str) -> None:
    assert an.satisfies(f"result <= {number}", float(number)) is True
