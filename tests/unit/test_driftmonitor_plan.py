"""The DriftMonitor's decide function (``toque.reconcile.driftmonitor``): when a cycle is
due, what the status, conditions and Events say after each kind of evaluation, and when
exactly one retraining TrainingJob is created."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from toque.api import driftmonitor as dm
from toque.drift import types as dtypes
from toque.reconcile import analysis, driftresult
from toque.reconcile import driftmonitor as decide
from toque.reconcile import driftqueries as dq
from toque.resources import drift_job

NOW = dt.datetime(2026, 11, 27, 10, 0, 0, tzinfo=dt.UTC)
RUN = "a" * 32
LIVE = decide.Live("churn-v1", "3", RUN, "churn-train")
TEMPLATE = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "churn-train", "namespace": "ns"},
    "spec": {
        "entrypoint": "pkg.train:main",
        "datasets": [{"ref": "churn-data@sha256:" + "b" * 64, "alias": "train"}],
        "model": {"name": "churn"},
    },
}


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "model": "churn",
        "reference": {"trainingData": True},
        "interval": "5m",
        "minSamples": 100,
        **extra,
    }


def observed(status: dict[str, Any] | None = None, **changes: Any) -> decide.Observed:
    base = decide.Observed(
        name="churn-drift",
        namespace="ns",
        uid="uid-1",
        generation=2,
        spec=spec(),
        status=status if status is not None else {"observedGeneration": 2},
        live=LIVE,
    )
    return dataclasses.replace(base, **changes)


def feature(name: str, drifted: bool) -> dm.FeatureScore:
    return dm.FeatureScore(
        name=name,
        kind="numeric",
        method="ks",
        score=0.4 if drifted else 0.01,
        p_value=0.001 if drifted else 0.8,
        threshold=0.05,
        threshold_source="default",
        drifted=drifted,
        verdict="Drift" if drifted else "NoDrift",
    )


def result(drifted: tuple[str, ...] = (), samples: int = 1000, **extra: Any) -> driftresult.Result:
    names = ("age", "income", "plan", "region")
    insufficient = samples < 100
    verdict = "InsufficientData" if insufficient else ("Drifted" if drifted else "Healthy")
    values: dict[str, Any] = {
        "verdict": verdict,
        "samples": samples,
        "total_features": 5,
        "monitored_features": 4,
        "features": tuple(feature(n, n in drifted) for n in names),
        "drifted_features": drifted,
        "drift_share": len(drifted) / 4,
        "share_threshold": 0.5,
        "dataset_drifted": len(drifted) >= 2,
        "estimated_accuracy": 0.9,
        "reference_accuracy": 0.92,
    }
    values.update(extra)
    return driftresult.Result(**values)


def evaluated(r: driftresult.Result, **extra: Any) -> decide.Evaluation:
    return decide.Evaluation(NOW, result=r, reference=f"run:{RUN}", **extra)


def run(obs: decide.Observed) -> decide.Plan:
    return decide.plan(obs, decide.Config(), NOW)


def condition(plan: decide.Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def reasons(plan: decide.Plan) -> list[str]:
    return [e.reason for e in plan.events]


# -- when a cycle is due ---------------------------------------------------------------------


def ready_status(last: dt.datetime, ready: str = "True") -> dict[str, Any]:
    return {
        "observedGeneration": 2,
        "lastEvaluationTime": last.isoformat(),
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": "Evaluated",
                "lastTransitionTime": last.isoformat(),
            }
        ],
    }


def test_an_evaluation_is_due_one_interval_after_the_last_even_after_a_restart() -> None:
    status = ready_status(NOW - dt.timedelta(minutes=4))
    assert decide.due_in(spec(), status, 2, None, NOW) == pytest.approx(60)
    assert decide.due_in(spec(), status, 2, None, NOW + dt.timedelta(minutes=1)) <= 0


def test_a_changed_spec_is_evaluated_at_once() -> None:
    status = ready_status(NOW - dt.timedelta(seconds=10))
    assert decide.due_in(spec(), status, 3, NOW, NOW) == 0


def test_after_a_failed_evaluation_the_next_try_comes_sooner_than_the_interval() -> None:
    status = ready_status(NOW - dt.timedelta(minutes=1), ready="False")
    assert decide.due_in(spec(), status, 2, None, NOW) == 0
    assert decide.due_in(spec(), status, 2, NOW, NOW) == pytest.approx(decide.RETRY_SECONDS)


def test_a_scheduled_monitor_syncs_its_cronjob_every_minute() -> None:
    scheduled = spec(mode="scheduled", schedule="@hourly")
    status = {"observedGeneration": 2}
    assert decide.due_in(scheduled, status, 2, None, NOW) == 0
    last = NOW - dt.timedelta(seconds=20)
    assert decide.due_in(scheduled, status, 2, last, NOW) == pytest.approx(40)


# -- without a verdict -----------------------------------------------------------------------


def test_without_a_live_version_the_monitor_is_pending_and_says_why() -> None:
    plan = run(observed(live=None, live_problem="no ModelVersion of model churn is Promoted"))
    assert plan.phase == "Pending" and plan.evaluate is None
    assert plan.status["message"] == "no ModelVersion of model churn is Promoted"
    ready = condition(plan, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoLiveVersion")
    assert plan.status["observedGeneration"] == 2


def test_with_a_live_version_the_plan_asks_for_an_evaluation_of_its_window() -> None:
    obs = observed(spec=spec(window="15m", bias={"feature": "region"}))
    plan = run(obs)
    assert plan.status == {} and plan.incomplete
    request = plan.evaluate
    assert request is not None and request.run_id == RUN and request.min_samples == 100
    assert request.target == dq.Target("ns", "churn", "3", 900, bias_feature="region")
    assert request.rules["minSamples"] == 100 and request.rules["thresholds"] == "default"


def test_prometheus_down_sets_ready_false_keeps_the_verdict_and_asks_for_a_retry() -> None:
    old = {
        "observedGeneration": 2,
        "phase": "Drifted",
        "drifted": True,
        "driftedFeatures": ["age", "plan"],
        "lastEvaluationTime": "2026-11-27T09:55:00Z",
    }
    failure = decide.Failure("PrometheusUnavailable", "Prometheus unreachable: refused", True)
    plan = run(observed(old, evaluation=decide.Evaluation(NOW, failure=failure)))
    assert plan.retry == failure
    assert plan.phase == "Drifted" and plan.status["drifted"] is True
    assert plan.status["driftedFeatures"] == ["age", "plan"]
    assert plan.status["lastEvaluationTime"] == "2026-11-27T09:55:00Z"
    ready = condition(plan, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PrometheusUnavailable")
    assert reasons(plan) == ["EvaluationFailed"]
    again = run(observed(plan.status, evaluation=decide.Evaluation(NOW, failure=failure)))
    assert reasons(again) == [], "the same failure is reported once"


def test_buckets_that_do_not_match_the_profile_fail_the_monitor_with_the_reason() -> None:
    failure = decide.Failure("ProfileMismatch", "feature 'age': 3 buckets, the profile 4")
    plan = run(observed(evaluation=decide.Evaluation(NOW, failure=failure)))
    assert plan.phase == "Failed" and plan.retry is None
    assert "3 buckets" in plan.status["message"]
    assert "drifted" not in plan.status


def test_no_prometheus_configured_is_a_clear_pending() -> None:
    plan = decide.plan(observed(), decide.Config(prometheus_configured=False), NOW)
    assert plan.phase == "Pending" and plan.evaluate is None
    assert condition(plan, "Ready")["reason"] == "NoPrometheus"


def test_an_invalid_spec_fails_the_monitor_and_says_which_field() -> None:
    plan = run(observed(spec=spec(minSamples=0)))
    assert plan.phase == "Failed" and "spec.minSamples" in plan.status["message"]


# -- verdicts --------------------------------------------------------------------------------


def test_a_healthy_evaluation_fills_the_status() -> None:
    usage = (dm.VersionUsage(version="3", requests=10, rows=1000, share=1.0),)
    ev = evaluated(result(), accuracy=0.91, labeled_rows=400, usage=usage)
    plan = run(observed(evaluation=ev))
    s = plan.status
    assert s["phase"] == "Healthy" and s["drifted"] is False and s["driftedFeatures"] == []
    assert s["lastEvaluationTime"] == "2026-11-27T10:00:00Z"
    assert (s["samples"], s["totalFeatures"], s["monitoredFeatures"]) == (1000, 5, 4)
    assert s["liveVersion"] == "churn-v1" and s["reference"] == f"run:{RUN}"
    assert s["features"][0] == {
        "name": "age",
        "kind": "numeric",
        "method": "ks",
        "score": 0.01,
        "pValue": 0.8,
        "threshold": 0.05,
        "thresholdSource": "default",
        "drifted": False,
        "verdict": "NoDrift",
    }
    assert (s["estimatedAccuracy"], s["accuracy"], s["referenceAccuracy"]) == (0.9, 0.91, 0.92)
    assert s["labeledRows"] == 400 and s["usage"] == [
        {"version": "3", "requests": 10.0, "rows": 1000.0, "share": 1.0}
    ]
    assert condition(plan, "Ready")["status"] == "True"
    assert condition(plan, "Drifted")["status"] == "False"
    assert reasons(plan) == [] and plan.create_trainingjob is None
    assert plan.metrics is not None and plan.metrics.version == "3"


def test_drift_names_the_features_in_the_condition_and_an_event_once() -> None:
    ev = evaluated(result(("age", "plan")))
    plan = run(observed(evaluation=ev))
    assert plan.phase == "Drifted" and plan.status["driftedFeatures"] == ["age", "plan"]
    drifted = condition(plan, "Drifted")
    assert drifted["status"] == "True" and drifted["reason"] == "DriftDetected"
    assert "age, plan" in drifted["message"] and "2 of 4" in drifted["message"]
    (event,) = plan.events
    assert (event.type, event.reason) == ("Warning", "DriftDetected")
    assert "age, plan" in event.message
    again = run(observed(plan.status, evaluation=ev))
    assert reasons(again) == []
    assert condition(again, "Drifted")["lastTransitionTime"] == drifted["lastTransitionTime"]


def test_a_model_wider_than_the_status_keeps_its_drifted_features_first() -> None:
    many = tuple(feature(f"f{i}", drifted=i % 500 == 499) for i in range(3000))
    kept = decide.status_features(many)
    assert len(kept) == decide.MAX_STATUS_FEATURES
    assert [f.name for f in kept[:6]] == ["f499", "f999", "f1499", "f1999", "f2499", "f2999"]
    assert decide.status_features(many[:10]) == list(many[:10])


def test_drift_going_away_posts_drift_resolved() -> None:
    first = run(observed(evaluation=evaluated(result(("age", "plan")))))
    later = run(observed(first.status, evaluation=evaluated(result())))
    assert later.phase == "Healthy"
    assert [(e.type, e.reason) for e in later.events] == [("Normal", "DriftResolved")]


def test_too_few_rows_is_insufficient_data_never_a_verdict() -> None:
    drifted = run(observed(evaluation=evaluated(result(("age", "plan")))))
    plan = run(observed(drifted.status, evaluation=evaluated(result(samples=40))))
    assert plan.phase == "InsufficientData"
    assert plan.status["drifted"] is None and plan.status["driftedFeatures"] == []
    c = condition(plan, "Drifted")
    assert (c["status"], c["reason"]) == ("Unknown", "InsufficientData")
    assert "40 rows" in c["message"]
    assert reasons(plan) == ["InsufficientData"], "no DriftResolved: nothing was resolved"
    assert run(observed(plan.status, evaluation=evaluated(result(samples=40)))).events == []


def test_output_drift_alone_flags_drift_and_says_so() -> None:
    output = dm.OutputDrift(method="jsd", score=0.3, threshold=0.1, drifted=True)
    plan = run(observed(evaluation=evaluated(result(verdict="Drifted", output=output))))
    assert plan.phase == "Drifted" and plan.status["drifted"] is False
    assert "output drift (jsd 0.3)" in condition(plan, "Drifted")["message"]


def test_a_performance_drop_measured_on_labels_degrades_and_drifts() -> None:
    obs = observed(spec=spec(performance={"maxDrop": 0.05}))
    ev = evaluated(result(), accuracy=0.8, labeled_rows=500)
    plan = run(dataclasses.replace(obs, evaluation=ev))
    c = condition(plan, "PerformanceDegraded")
    assert (c["status"], c["reason"]) == ("True", "AccuracyDropped")
    assert "0.800 (measured on 500 labelled rows)" in c["message"]
    assert plan.phase == "Drifted" and "PerformanceDropped" in reasons(plan)


def test_the_estimate_judges_performance_when_too_few_labels_came_back() -> None:
    obs = observed(spec=spec(performance={"maxDrop": 0.05}))
    ev = evaluated(result(estimated_accuracy=0.9), accuracy=0.2, labeled_rows=10)
    plan = run(dataclasses.replace(obs, evaluation=ev))
    c = condition(plan, "PerformanceDegraded")
    assert (c["status"], c["reason"]) == ("False", "WithinLimit")
    assert "estimated" in c["message"] and plan.phase == "Healthy"


def test_performance_without_any_accuracy_is_unknown_not_degraded() -> None:
    obs = observed(spec=spec(performance={}))
    ev = evaluated(result(estimated_accuracy=None))
    plan = run(dataclasses.replace(obs, evaluation=ev))
    assert condition(plan, "PerformanceDegraded")["status"] == "Unknown"
    assert plan.phase == "Healthy"


def test_bias_above_the_limit_sets_biased_and_posts_an_event() -> None:
    bias = dm.BiasStatus(feature="region", disparity=0.4, error_disparity=0.1, biased=True)
    obs = observed(spec=spec(bias={"feature": "region", "maxDisparity": 0.2}))
    plan = run(dataclasses.replace(obs, evaluation=evaluated(result(), bias=bias)))
    c = condition(plan, "Biased")
    assert (c["status"], c["reason"]) == ("True", "DisparityAboveLimit")
    assert "positive-rate gap 0.4" in c["message"] and "BiasDetected" in reasons(plan)
    assert plan.status["bias"]["disparity"] == 0.4


# -- retraining ------------------------------------------------------------------------------


def retraining_spec(**on_drift: Any) -> dict[str, Any]:
    return spec(onDrift={"enabled": True, "dataTag": "latest", "cooldown": "1h", **on_drift})


def drifted_obs(status: dict[str, Any] | None = None, **changes: Any) -> decide.Observed:
    obs = observed(status, spec=retraining_spec(), evaluation=evaluated(result(("age", "plan"))))
    return dataclasses.replace(obs, **changes)


def test_drift_first_asks_for_the_retraining_context() -> None:
    plan = run(drifted_obs())
    assert plan.retrain == decide.RetrainRequest(template="churn-train", last_job=None)
    assert plan.status == {} and plan.create_trainingjob is None


def test_drift_creates_one_retraining_named_by_the_monitor_and_the_evaluation() -> None:
    plan = run(drifted_obs(retrain=decide.RetrainContext(template=TEMPLATE)))
    job = plan.create_trainingjob
    assert job is not None
    name = "churn-drift-retrain-20261127-100000"
    assert job["metadata"]["name"] == name
    assert job["metadata"]["labels"][dm.LABEL_DRIFT_MONITOR] == "churn-drift"
    assert job["metadata"]["annotations"][dm.ANNOTATION_TRIGGER_EVALUATION] == (
        "2026-11-27T10:00:00Z"
    )
    assert "age, plan" in job["metadata"]["annotations"][dm.ANNOTATION_TRIGGER_REASON]
    assert job["spec"]["datasets"] == [{"ref": "churn-data:latest", "alias": "train"}]
    s = plan.status
    assert (s["lastRetrainJob"], s["retrains"]) == (name, 1)
    assert s["lastRetrainTime"] == "2026-11-27T10:00:00Z"
    event = next(e for e in plan.events if e.reason == "RetrainTriggered")
    assert name in event.message and "churn-train" in event.message


def test_the_same_evaluation_asks_for_the_same_job_after_a_crash() -> None:
    first = run(drifted_obs(retrain=decide.RetrainContext(template=TEMPLATE)))
    second = run(drifted_obs(retrain=decide.RetrainContext(template=TEMPLATE)))
    assert first.create_trainingjob == second.create_trainingjob


def test_a_running_retraining_blocks_the_next_one() -> None:
    running = decide.RetrainJob("churn-drift-retrain-1", "Running", NOW - dt.timedelta(hours=3))
    status = {"observedGeneration": 2, "lastRetrainJob": running.name, "retrains": 1}
    ctx = decide.RetrainContext(jobs=(running,), template=TEMPLATE)
    plan = run(drifted_obs(status, retrain=ctx))
    assert plan.create_trainingjob is None and "RetrainTriggered" not in reasons(plan)
    assert plan.status["retrainMessage"] == "retraining churn-drift-retrain-1 still runs"
    assert plan.status["retrains"] == 1


def test_a_retraining_created_before_a_crash_is_adopted_not_repeated() -> None:
    orphan = decide.RetrainJob("churn-drift-retrain-x", "Pending", NOW - dt.timedelta(seconds=30))
    ctx = decide.RetrainContext(jobs=(orphan,), template=TEMPLATE)
    plan = run(drifted_obs(retrain=ctx))
    assert plan.create_trainingjob is None
    assert plan.status["lastRetrainJob"] == "churn-drift-retrain-x"
    assert plan.status["retrains"] == 1


def test_the_cooldown_runs_from_the_newest_retraining_even_without_status() -> None:
    done = decide.RetrainJob("churn-drift-retrain-1", "Succeeded", NOW - dt.timedelta(minutes=20))
    ctx = decide.RetrainContext(jobs=(done,), template=TEMPLATE)
    plan = run(drifted_obs(retrain=ctx))
    assert plan.create_trainingjob is None
    assert plan.status["retrainMessage"] == (
        "no retraining before 2026-11-27T10:40:00Z (cooldown 1h)"
    )


def test_after_the_cooldown_a_finished_or_deleted_retraining_lets_the_next_start() -> None:
    done = decide.RetrainJob("churn-drift-retrain-1", "Failed", NOW - dt.timedelta(hours=2))
    status = {
        "observedGeneration": 2,
        "lastRetrainJob": "deleted-one",
        "lastRetrainTime": (NOW - dt.timedelta(hours=2)).isoformat(),
        "retrains": 2,
    }
    plan = run(drifted_obs(status, retrain=decide.RetrainContext(jobs=(done,), template=TEMPLATE)))
    assert plan.create_trainingjob is not None and plan.status["retrains"] == 3


def test_a_missing_template_is_reported_once_and_creates_nothing() -> None:
    ctx = decide.RetrainContext(template_problem="TrainingJob churn-train to clone was not found")
    plan = run(drifted_obs(retrain=ctx))
    assert plan.create_trainingjob is None
    assert plan.status["retrainMessage"] == (
        "cannot retrain: TrainingJob churn-train to clone was not found"
    )
    assert "RetrainFailed" in reasons(plan)
    again = run(drifted_obs(plan.status, retrain=ctx))
    assert "RetrainFailed" not in reasons(again)


def test_a_version_made_without_a_trainingjob_needs_a_template() -> None:
    obs = drifted_obs(live=dataclasses.replace(LIVE, trainingjob=None))
    plan = run(dataclasses.replace(obs, retrain=decide.RetrainContext()))
    assert "set onDrift.trainingJob" in plan.status["retrainMessage"]


def test_on_drift_training_job_is_the_template_to_read() -> None:
    obs = drifted_obs(spec=retraining_spec(trainingJob="churn-recipe"))
    assert run(obs).retrain == decide.RetrainRequest(template="churn-recipe", last_job=None)


def test_insufficient_data_or_retraining_off_never_retrains() -> None:
    few = drifted_obs(evaluation=evaluated(result(samples=10)))
    assert run(few).retrain is None
    off = drifted_obs(spec=retraining_spec(enabled=False))
    assert run(off).retrain is None and run(off).phase == "Drifted"


def test_a_performance_drop_retrains_only_when_asked() -> None:
    ev = evaluated(result(), accuracy=0.7, labeled_rows=500)
    asked = observed(
        spec=spec(performance={}, onDrift={"onPerformanceDrop": True}),
        evaluation=ev,
        retrain=decide.RetrainContext(template=TEMPLATE),
    )
    plan = run(asked)
    assert plan.create_trainingjob is not None
    reason = plan.create_trainingjob["metadata"]["annotations"][dm.ANNOTATION_TRIGGER_REASON]
    assert "accuracy 0.700" in reason
    not_asked = dataclasses.replace(asked, spec=spec(performance={}, onDrift={}))
    assert run(not_asked).create_trainingjob is None


def test_a_refused_retraining_keeps_the_previous_one_and_warns() -> None:
    previous = {"observedGeneration": 2, "lastRetrainJob": "old", "retrains": 4}
    plan = run(drifted_obs(previous, retrain=decide.RetrainContext(template=TEMPLATE)))
    out = decide.rejected(plan, previous, "admission webhook denied it")
    assert out.create_trainingjob is None
    assert (out.status["lastRetrainJob"], out.status["retrains"]) == ("old", 4)
    assert "admission webhook denied it" in out.status["retrainMessage"]
    assert reasons(out)[-1] == "RetrainFailed" and "RetrainTriggered" not in reasons(out)


# -- scheduled mode --------------------------------------------------------------------------


def scheduled(status: dict[str, Any] | None = None, **changes: Any) -> decide.Observed:
    obs = observed(status, spec=spec(mode="scheduled", schedule="0 * * * *"))
    return dataclasses.replace(obs, **changes)


def compact(drifted: list[str]) -> str:
    return json.dumps(
        {
            "verdict": "Drifted" if drifted else "Healthy",
            "samples": 800,
            "total_features": 3,
            "monitored_features": 3,
            "drift_share": len(drifted) / 3,
            "share_threshold": 0.5,
            "dataset_drifted": len(drifted) >= 2,
            "output": None,
            "multivariate": {"error": 1.5, "threshold": 1.2, "drifted": True},
            "estimated_accuracy": None,
            "reference_accuracy": None,
            "drifted_features": drifted,
            "features": [
                {"name": n, "method": "ks", "score": 0.3, "p_value": 0.01, "threshold": 0.05,
                 "threshold_source": "default", "verdict": "Drift", "drifted": True,
                 "missing_drifted": False}
                for n in drifted
            ],
            "omitted": 1,
        }
    )  # fmt: skip


def test_a_scheduled_monitor_applies_its_cronjob_and_waits_for_the_first_check() -> None:
    plan = run(scheduled())
    assert plan.cronjob is not None and plan.evaluate is None
    assert plan.cronjob["metadata"]["name"] == drift_job.cronjob_name("churn-drift")
    assert (
        f"runs:/{RUN}"
        in plan.cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert (
        plan.phase == "Pending"
        and "waiting for the first scheduled check" in (plan.status["message"])
    )


def test_a_finished_check_job_is_recorded_once() -> None:
    finished = NOW - dt.timedelta(minutes=2)
    check = decide.ScheduledRun("churn-drift-drift-29000000", finished, compact(["a", "b"]), 1)
    plan = run(scheduled(scheduled=check))
    s = plan.status
    assert s["phase"] == "Drifted" and s["lastScheduledJob"] == check.job
    assert s["lastEvaluationTime"] == "2026-11-27T09:58:00Z"
    assert s["driftedFeatures"] == ["a", "b"] and s["samples"] == 800
    assert s["multivariate"] == {"error": 1.5, "threshold": 1.2, "drifted": True}
    assert "1 more features not reported" in condition(plan, "Drifted")["message"]
    again = run(scheduled(s, scheduled=dataclasses.replace(check, message=None)))
    assert again.events == [] and again.status["lastEvaluationTime"] == s["lastEvaluationTime"]


def test_a_check_job_without_a_report_fails_the_monitor_with_its_output() -> None:
    check = decide.ScheduledRun("j1", NOW, "Traceback ...\nKeyError: 'x'", 2)
    plan = run(scheduled(scheduled=check))
    assert plan.phase == "Failed" and plan.status["lastScheduledJob"] == "j1"
    ready = condition(plan, "Ready")
    assert ready["reason"] == "CheckFailed" and "exit code 2" in ready["message"]
    assert "KeyError" in ready["message"]


def test_switching_to_continuous_removes_the_cronjob() -> None:
    plan = run(observed({"observedGeneration": 1}))
    assert plan.delete_cronjob == drift_job.cronjob_name("churn-drift")
    assert run(observed()).delete_cronjob is None


# -- the continuous evaluation, end to end through toque.drift ----------------------------------


def test_an_evaluation_from_prometheus_answers_finds_the_shifted_feature() -> None:
    features = {
        name: dtypes.FeatureProfile(
            name, "numeric", rows=2000, missing=0, counts=[500, 500, 500, 500], edges=[1, 2, 3],
            std=1.0,
        )
        for name in ("x", "y")
    }  # fmt: skip
    profile = dtypes.Profile(features=features, rows=2000, source="run:abc")

    def histogram(name: str, counts: list[int]) -> list[analysis.Sample]:
        out, running = [], 0
        for edge, n in zip(["1", "2", "3", "+Inf"], counts, strict=True):
            running += n
            out.append(analysis.Sample({"feature": name, "le": edge}, running))
        return out

    answers = {
        dq.ROWS: [analysis.Sample({}, 1000)],
        dq.FEATURES: histogram("x", [250, 250, 250, 250]) + histogram("y", [0, 0, 100, 900]),
    }
    request = decide.EvaluationRequest(
        target=dq.Target("ns", "m", "1", 3600),
        run_id=RUN,
        rules=dm.rules_document(dm.DriftMonitorSpec.model_validate(spec())),
        bias=None,
        min_samples=100,
    )
    ev = decide.evaluation(request, profile, answers, NOW)
    assert ev.failure is None and ev.result is not None
    assert ev.result.drifted_features == ("y",) and ev.result.samples == 1000
    assert ev.reference == "run:abc"


def test_an_evaluation_that_cannot_align_the_buckets_fails_with_a_reason() -> None:
    feature = dtypes.FeatureProfile("x", "numeric", rows=10, missing=0, counts=[5, 5], edges=[1])
    profile = dtypes.Profile(features={"x": feature}, rows=10)
    answers = {dq.ROWS: [analysis.Sample({}, 5)]}
    request = decide.EvaluationRequest(dq.Target("ns", "m", "1", 60), RUN, {}, None, 1)
    ev = decide.evaluation(request, profile, answers, NOW)
    assert ev.failure is not None and ev.failure.reason == "ProfileMismatch"


# -- the live version --------------------------------------------------------------------------


def version(name: str, phase: str, promoted: str = "", **spec_: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"model": "churn", **spec_},
        "status": {
            "phase": phase,
            "registry": {"version": name[-1]},
            "runId": RUN,
            "promotedAt": promoted,
        },
    }


def test_the_live_version_is_the_latest_promoted_one_and_names_its_trainingjob() -> None:
    versions = [
        version("churn-v1", "Superseded", "2026-11-01T00:00:00Z"),
        version("churn-v2", "Promoted", "2026-11-02T00:00:00Z", source={"trainingJob": "t2"}),
        version("churn-v3", "Progressing"),
        {**version("other-v9", "Promoted"), "spec": {"model": "other"}},
    ]
    live, problem = decide.live_version("churn", versions)
    assert problem == "" and live == decide.Live("churn-v2", "2", RUN, "t2")
    none, why = decide.live_version("churn", versions[:1])
    assert none is None and "no ModelVersion of model churn is Promoted" in why
