"""The TrainingJob decide function: what to create, which phase, which Events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from toque.reconcile import trainingjob as decide
from toque.resources import pods

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=3)
CONFIG = pods.BuildConfig(runtime_image="toque:test")
SPEC = {"entrypoint": "pkg.mod:fn", "resources": {"cpu": "1"}}


def observed(
    job: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    generation: int = 1,
) -> decide.Observed:
    return decide.Observed(
        name="demo",
        namespace="ns",
        uid="uid-1",
        generation=generation,
        spec=spec if spec is not None else SPEC,
        status=status or {},
        job=job,
        pods=pods or [],
    )


def live_job(
    status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None, uid: str = "uid-1"
) -> dict[str, Any]:
    obs = observed(spec=spec)
    job = decide.plan(obs, CONFIG, NOW).create_job
    assert job is not None
    job["metadata"]["ownerReferences"][0]["uid"] = uid
    job["status"] = status or {}
    return job


def cond(plan: decide.Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def test_first_cycle_creates_the_job_and_says_so() -> None:
    plan = decide.plan(observed(), CONFIG, NOW)
    assert plan.create_job is not None and plan.create_job["metadata"]["name"] == "demo"
    assert plan.phase == "Pending"
    assert plan.status["observedGeneration"] == 1
    assert cond(plan, "JobCreated")["status"] == "True"
    assert [e.reason for e in plan.events] == ["JobCreated", "Pending"]


def test_existing_job_is_not_created_again() -> None:
    plan = decide.plan(observed(job=live_job()), CONFIG, NOW)
    assert plan.create_job is None and plan.update_job is None


def test_a_foreign_job_with_our_name_is_a_conflict() -> None:
    plan = decide.plan(observed(job=live_job(uid="someone-else")), CONFIG, NOW)
    assert plan.create_job is None
    assert cond(plan, "JobCreated")["reason"] == "NameConflict"
    assert plan.events[0].type == "Warning"
    again = decide.plan(observed(job=live_job(uid="x"), status=plan.status), CONFIG, LATER)
    assert again.events == []  # no Event storm on every cycle


def running_pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-abcde"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
        },
    }


def test_running_pod_means_running() -> None:
    job = live_job({"active": 1, "startTime": "2026-11-27T12:00:01Z"})
    plan = decide.plan(observed(job=job, pods=[running_pod()]), CONFIG, NOW)
    assert plan.phase == "Running"
    assert plan.status["startTime"] == "2026-11-27T12:00:01Z"
    assert plan.status["attempts"] == 1
    assert cond(plan, "Running")["status"] == "True"


def test_first_pod_of_a_normal_run_sets_pod_created_true() -> None:
    job = live_job({"active": 1})
    first = decide.plan(observed(job=job), CONFIG, NOW)
    assert "PodCreated" not in {c["type"] for c in first.status["conditions"]}
    plan = decide.plan(observed(job=job, pods=[running_pod()], status=first.status), CONFIG, NOW)
    assert cond(plan, "PodCreated")["status"] == "True"
    assert cond(plan, "PodCreated")["reason"] == "Created"


def test_complete_job_means_succeeded_with_times() -> None:
    job = live_job(
        {
            "succeeded": 1,
            "startTime": "2026-11-27T12:00:01Z",
            "completionTime": "2026-11-27T12:02:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    )
    plan = decide.plan(observed(job=job, status={"phase": "Running"}), CONFIG, NOW)
    assert plan.phase == "Succeeded"
    assert plan.status["completionTime"] == "2026-11-27T12:02:00Z"
    assert cond(plan, "Succeeded")["status"] == "True"
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Succeeded")]


def failed_pod(code: int, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "demo-xyz"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Error",
                            "message": message,
                            "finishedAt": "2026-11-27T12:01:00Z",
                        }
                    },
                }
            ],
        },
    }


def test_failed_job_carries_the_reason_and_the_pods_message() -> None:
    job = live_job(
        {
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": "2026-11-27T12:01:02Z",
                }
            ],
        }
    )
    pods = [failed_pod(1, "Traceback...\nValueError: bad column 'x'")]
    plan = decide.plan(observed(job=job, pods=pods, status={"phase": "Running"}), CONFIG, NOW)
    assert plan.phase == "Failed"
    failed = cond(plan, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exit code 1" in failed["message"] and "bad column 'x'" in failed["message"]
    assert plan.status["completionTime"] == "2026-11-27T12:01:02Z"
    assert plan.events[0].type == "Warning"


def test_deadline_exceeded_is_reported() -> None:
    job = live_job(
        {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "too long",
                }
            ]
        }
    )
    plan = decide.plan(observed(job=job), CONFIG, NOW)
    assert cond(plan, "Failed")["reason"] == "DeadlineExceeded"


def test_unschedulable_pod_keeps_pending_and_says_why() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    plan = decide.plan(observed(job=live_job({"active": 1}), pods=[pod]), CONFIG, NOW)
    assert plan.phase == "Pending"
    scheduled = cond(plan, "PodScheduled")
    assert scheduled["status"] == "False" and "Insufficient nvidia.com/gpu" in scheduled["message"]


def test_image_pull_errors_surface() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "waiting": {"reason": "ImagePullBackOff", "message": "no such image"}
                    },
                }
            ],
        },
    }
    plan = decide.plan(observed(job=live_job({"active": 1}), pods=[pod]), CONFIG, NOW)
    assert "ImagePullBackOff" in plan.status["message"]


def test_suspend_toggles_are_applied_to_the_live_job() -> None:
    spec = {**SPEC, "suspend": True}
    plan = decide.plan(observed(job=live_job(), spec=spec), CONFIG, NOW)
    assert plan.update_job is not None and plan.update_job["spec"]["suspend"] is True
    assert plan.phase == "Suspended"


def test_pod_template_changes_after_start_are_reported_not_applied() -> None:
    plan = decide.plan(observed(job=live_job(), spec={**SPEC, "image": "new:2"}), CONFIG, NOW)
    assert plan.create_job is None and plan.update_job is None
    assert cond(plan, "SpecApplied")["reason"] == "ImmutableAfterStart"


def test_finished_run_whose_job_was_deleted_is_not_rerun() -> None:
    status = {"phase": "Succeeded", "message": "training finished"}
    plan = decide.plan(observed(job=None, status=status), CONFIG, NOW)
    assert plan.create_job is None and plan.phase == "Succeeded"


def test_invalid_spec_fails_with_the_field() -> None:
    plan = decide.plan(observed(spec={"entrypoint": "pkg:fn", "bogus": 1}), CONFIG, NOW)
    assert plan.create_job is None and plan.phase == "Failed"
    assert cond(plan, "Failed")["reason"] == "InvalidSpec"
    assert "spec.bogus" in plan.status["message"]


def test_repeated_cycles_are_stable() -> None:
    job = live_job({"active": 1})
    first = decide.plan(observed(job=job, pods=[running_pod()]), CONFIG, NOW)
    second = decide.plan(
        observed(job=job, pods=[running_pod()], status=first.status), CONFIG, LATER
    )
    assert second.status == first.status
    assert second.events == []


def test_rejected_job_becomes_a_condition() -> None:
    obs = observed()
    plan = decide.rejected(obs, decide.plan(obs, CONFIG, NOW), "priorityclass not found", NOW)
    assert cond(plan, "JobCreated")["reason"] == "JobRejected"
    assert "priorityclass not found" in plan.status["message"]


def test_pod_creation_failures_are_reported() -> None:
    warning = {"reason": "FailedCreate", "message": 'pods "demo-x" is forbidden: exceeded quota'}
    obs = decide.Observed(**{**observed(job=live_job()).__dict__, "job_warnings": [warning]})
    plan = decide.plan(obs, CONFIG, NOW)
    assert plan.phase == "Pending"
    created = cond(plan, "PodCreated")
    assert created["status"] == "False" and "exceeded quota" in created["message"]
    with_pod = decide.plan(
        observed(job=live_job({"active": 1}), pods=[running_pod()], status=plan.status),
        CONFIG,
        LATER,
    )
    assert cond(with_pod, "PodCreated")["status"] == "True"


def succeeded(message: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = live_job(
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, spec=GATED
    )
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 0, "message": message}}}
            ],
        },
    }
    return job, [pod]


GATED = {
    **SPEC,
    "model": {"name": "clf"},
    "evaluation": {"thresholds": [{"metric": "val_accuracy", "op": ">=", "value": 0.9}]},
    "promote": {"alias": "champion", "serving": {"replicas": 2}},
}
RESULT = (
    '{"runId": "r1", "modelUri": "models:/m-1", "modelDigest": "sha256:abc", '
    '"metrics": {"val_accuracy": 0.95}, "datasets": [{"ref": "bc:latest", '
    '"digest": "sha256:ddd"}], "codeRevision": "git:123"}'
)


def test_result_gate_and_model_version() -> None:
    job, pods = succeeded(RESULT)
    plan = decide.plan(
        observed(job=job, pods=pods, spec=GATED, status={"phase": "Running"}), CONFIG, NOW
    )
    status = plan.status
    assert (status["mlflowRunId"], status["modelUri"], status["modelDigest"]) == (
        "r1",
        "models:/m-1",
        "sha256:abc",
    )
    assert status["metrics"] == {"val_accuracy": 0.95}
    assert status["datasets"] == [{"ref": "bc:latest", "digest": "sha256:ddd"}]
    assert status["codeRevision"] == "git:123"
    assert status["gate"]["passed"] is True
    mv = plan.apply_model_version
    assert mv is not None and mv["spec"]["model"] == "clf"
    assert mv["spec"]["source"] == {"trainingJob": "demo"}
    assert mv["spec"]["alias"] == "champion" and mv["spec"]["serving"]["replicas"] == 2
    assert status["modelVersion"] == mv["metadata"]["name"]
    again = decide.plan(observed(job=job, pods=pods, spec=GATED, status=status), CONFIG, LATER)
    assert again.apply_model_version is None and again.events == []


def test_failed_gate_creates_no_model_version() -> None:
    job, pods = succeeded(RESULT.replace("0.95", "0.5"))
    plan = decide.plan(observed(job=job, pods=pods, spec=GATED), CONFIG, NOW)
    assert plan.status["gate"]["passed"] is False
    assert plan.apply_model_version is None
    assert cond(plan, "GatePassed")["reason"] == "GateFailed"
    assert any(e.reason == "GateFailed" and e.type == "Warning" for e in plan.events)


def test_champion_rule_waits_for_the_registry() -> None:
    spec = {**GATED, "evaluation": {"mustBeatChampion": {"metric": "val_accuracy"}}}
    job, pods = succeeded(RESULT)
    obs = decide.Observed(
        **{
            **observed(job=job, pods=pods, spec=spec).__dict__,
            "champion_error": "connection refused",
        }
    )
    assert decide.needs_champion(obs)
    plan = decide.plan(obs, CONFIG, NOW)
    assert plan.retry_after and "gate" not in plan.status
    assert "connection refused" in cond(plan, "GatePassed")["message"]


def test_transient_exits_raise_a_condition() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": 75,
                            "message": "DependencyUnavailable: MLflow unreachable",
                        }
                    },
                }
            ],
        },
    }
    plan = decide.plan(
        observed(job=live_job({"active": 1}), pods=[pod, running_pod()]), CONFIG, NOW
    )
    deps = cond(plan, "DependenciesReady")
    assert deps["status"] == "False" and "MLflow unreachable" in deps["message"]


def test_platform_settings_reach_the_pod() -> None:
    config = pods.BuildConfig(
        runtime_image="rt:1",
        mlflow_tracking_uri="http://mlflow:5000",
        s3_endpoint="http://minio:9000",
        credentials_secret="s3-creds",
    )
    obs = observed(spec={**SPEC, "env": [{"name": "MLFLOW_TRACKING_URI", "value": "mine"}]})
    job = decide.plan(obs, config, NOW).create_job
    assert job is not None
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "mine"  # the user's value wins
    assert env["TOQUE_S3_ENDPOINT"]["value"] == "http://minio:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }


def test_unsettled_until_the_run_ends_and_its_gate_has_the_registry() -> None:
    assert decide.unsettled(decide.Plan(status={"phase": "Running"}))
    assert decide.unsettled(decide.Plan(status={}))
    assert not decide.unsettled(decide.Plan(status={"phase": "Succeeded"}))
    assert not decide.unsettled(decide.Plan(status={"phase": "Suspended"}))
    assert decide.unsettled(decide.Plan(status={"phase": "Succeeded"}, retry_after=10.0))


def test_the_champion_query_names_the_namespaced_model_and_the_alias() -> None:
    spec = {**GATED, "evaluation": {"mustBeatChampion": {"metric": "m", "alias": "prod"}}}
    query = decide.champion_query(observed(spec=spec))
    assert (query.registered_model, query.alias, query.problem) == ("ns.clf", "prod", None)
    default = decide.champion_query(
        observed(spec={**spec, "evaluation": {"mustBeatChampion": {"metric": "m"}}})
    )
    assert default.alias == "champion"
    unnamed = decide.champion_query(observed(spec={**SPEC, "evaluation": spec["evaluation"]}))
    assert unnamed.registered_model is None and unnamed.problem  # never a registry call


def test_a_status_from_an_older_operator_is_read_and_its_unknown_keys_left_alone() -> None:
    job = live_job({"active": 1, "startTime": "2026-11-27T12:00:01Z"})
    old = {"phase": "Running", "legacyField": {"x": 1}, "attempts": "one", "jobName": "demo"}
    plan = decide.plan(observed(job=job, pods=[running_pod()], status=old), CONFIG, NOW)
    assert plan.phase == "Running" and plan.status["attempts"] == 1
    assert "legacyField" not in plan.status


def test_the_completion_time_falls_back_to_the_jobs_condition() -> None:
    complete = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-27T12:05:00Z"}
    job = live_job({"succeeded": 1, "conditions": [complete]})
    plan = decide.plan(observed(job=job, status={"phase": "Running"}), CONFIG, NOW)
    assert plan.status["completionTime"] == "2026-11-27T12:05:00Z"
    kept = decide.plan(observed(job=job, status=plan.status), CONFIG, LATER)
    assert kept.status["completionTime"] == "2026-11-27T12:05:00Z"


DIGEST = "sha256:" + "ab" * 32


def test_the_image_digest_the_trainer_ran_is_recorded_from_its_image_id() -> None:
    job, pods = succeeded(RESULT)
    pods[0]["status"]["containerStatuses"][0]["imageID"] = f"registry.local:5000/toque@{DIGEST}"
    plan = decide.plan(observed(job=job, pods=pods, spec=GATED), CONFIG, NOW)
    assert plan.status["imageDigest"] == f"registry.local:5000/toque@{DIGEST}"
    # Once the Job and its pods are gone the recorded image stays.
    gone = decide.plan(observed(job=None, status=plan.status, spec=GATED), CONFIG, LATER)
    assert gone.status["imageDigest"] == f"registry.local:5000/toque@{DIGEST}"


def test_no_image_digest_is_recorded_without_a_registry_digest() -> None:
    job, pods = succeeded(RESULT)
    pods[0]["status"]["containerStatuses"][0]["imageID"] = DIGEST  # a local image ID
    plan = decide.plan(observed(job=job, pods=pods, spec=GATED), CONFIG, NOW)
    assert "imageDigest" not in plan.status


def test_image_ids_are_read_as_a_pinned_reference_or_nothing() -> None:
    assert decide.pinned_image(f"docker-pullable://python@{DIGEST}") == f"python@{DIGEST}"
    assert decide.pinned_image(f"ghcr.io/a/b@{DIGEST}") == f"ghcr.io/a/b@{DIGEST}"
    assert decide.pinned_image(DIGEST) is None
    assert decide.pinned_image("ghcr.io/a/b:1.0") is None
    assert decide.pinned_image("ghcr.io/a/b@sha256:short") is None
    assert decide.pinned_image(None) is None
