"""The CronJob of a scheduled DriftMonitor (``toque.resources.drift_job``): what it runs,
with which settings, under which security context and ownership."""

from __future__ import annotations

import json
from typing import Any

from toque.api import driftmonitor as dm
from toque.drift import types as dtypes
from toque.handlers import settings
from toque.resources import drift_job, pods

OWNER = drift_job.Owner("churn-drift", "team-a", "uid-dm")
LIVE = drift_job.Live("churn", "7", "a" * 32)
CONFIG = pods.BuildConfig(
    runtime_image="registry.local/toque:1",
    mlflow_tracking_uri="http://user:secret@mlflow:5000",
    s3_endpoint="http://minio:9000",
    data_bucket="toque-data",
    credentials_secret="store-creds",
)


def spec(**extra: Any) -> dm.DriftMonitorSpec:
    return dm.DriftMonitorSpec.model_validate(
        {
            "model": "churn",
            "reference": {"trainingData": True},
            "mode": "scheduled",
            "schedule": "*/30 * * * *",
            "window": "6h",
            **extra,
        }
    )


def build(s: dm.DriftMonitorSpec | None = None) -> dict[str, Any]:
    s = s or spec()
    reference = drift_job.reference(s, LIVE)
    assert reference is not None
    return drift_job.build(OWNER, s, LIVE, reference, CONFIG)


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (only,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_the_cronjob_runs_the_check_on_the_schedule_without_overlap() -> None:
    cron = build()
    assert (cron["apiVersion"], cron["kind"]) == ("batch/v1", "CronJob")
    assert cron["metadata"]["name"] == "churn-drift-drift"
    s = cron["spec"]
    assert s["schedule"] == "*/30 * * * *" and s["concurrencyPolicy"] == "Forbid"
    assert s["successfulJobsHistoryLimit"] == s["failedJobsHistoryLimit"] == 3
    assert s["startingDeadlineSeconds"] > 0 and s["suspend"] is False


def test_it_checks_the_live_version_s_samples_against_its_run_with_the_rules() -> None:
    c = container(build(spec(thresholds="auto", features=[{"name": "age", "method": "psi"}])))
    assert c["image"] == "registry.local/toque:1" and c["command"] == ["toque"]
    args = c["args"]
    assert args[:2] == ["drift", "check"]
    assert arg(args, "--reference") == "runs:/" + "a" * 32
    assert arg(args, "--current") == "samples:team-a/churn/7"
    assert arg(args, "--window") == "21600s"
    assert arg(args, "--termination-log") == "/dev/termination-log"
    assert "--exit-zero" in args  # a drift verdict must not fail the Job
    rules = dtypes.rules_from_dict(json.loads(arg(args, "--rules")))
    assert rules.thresholds == "auto" and rules.min_samples == 500
    assert rules.features == {"age": dtypes.FeatureRule(method="psi")}
    assert c["terminationMessagePath"] == "/dev/termination-log"


def test_a_window_of_several_units_is_passed_in_seconds() -> None:
    assert arg(container(build(spec(window="1h30m")))["args"], "--window") == "5400s"
    assert arg(container(build(spec(window="500ms")))["args"], "--window") == "1s"


def test_a_dataset_reference_is_passed_as_such() -> None:
    s = spec(reference={"dataset": "churn-golden:v2"})
    assert drift_job.reference(s, LIVE) == "dataset:churn-golden:v2"
    assert arg(container(build(s))["args"], "--reference") == "dataset:churn-golden:v2"


def test_a_live_version_without_a_run_has_no_reference_to_read() -> None:
    assert drift_job.reference(spec(), drift_job.Live("churn", "7", None)) is None


def test_the_pod_gets_the_store_settings_and_credentials_only_by_secret_ref() -> None:
    env = {e["name"]: e for e in container(build())["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
    assert env["TOQUE_S3_ENDPOINT"]["value"] == "http://minio:9000"
    assert env["TOQUE_DATA_BUCKET"]["value"] == "toque-data"
    secret = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "store-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    assert "secret" not in json.dumps(container(build())["args"])


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = build()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(build())["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"


def test_verdicts_end_the_job_at_once_instead_of_being_retried() -> None:
    job = build()["spec"]["jobTemplate"]["spec"]
    fail = job["podFailurePolicy"]["rules"][0]
    assert fail["action"] == "FailJob" and fail["onExitCodes"]["values"] == [1, 2, 3]
    assert job["activeDeadlineSeconds"] > 0


def test_the_monitor_owns_the_cronjob_and_its_jobs_are_watched() -> None:
    cron = build()
    (ref,) = cron["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "DriftMonitor",
        "churn-drift",
        "uid-dm",
        True,
    )
    key, value = settings.OWNED_SELECTOR.split("=")
    job_meta = cron["spec"]["jobTemplate"]["metadata"]
    for labels in (job_meta["labels"], cron["metadata"]["labels"]):
        assert labels[key] == value and labels[dm.LABEL_DRIFT_MONITOR] == "churn-drift"
    assert job_meta["annotations"][drift_job.MONITOR_ANNOTATION] == "churn-drift"


def test_a_long_monitor_name_fits_the_cronjob_name_limit() -> None:
    name = drift_job.cronjob_name("x" * 253)
    assert len(name) <= 52 and name == drift_job.cronjob_name("x" * 253)


def test_check_pod_sets_the_image_resources_and_scheduling() -> None:
    s = spec(
        checkPod={
            "image": "registry.local/toque-drift:2",
            "resources": {"cpu": 0.5, "memory": "2Gi"},
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    cron = build(s)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = container(cron)
    assert c["image"] == "registry.local/toque-drift:2"
    assert c["resources"] == {
        "requests": {"cpu": "0.5", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"] == [{"key": "pool", "operator": "Exists", "effect": "NoSchedule"}]
    plain = build()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain
    assert container(build())["resources"] == drift_job.RESOURCES
