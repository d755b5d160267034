"""The Job built for a TrainingJob: exact requested spec, restricted pod, owner, names."""

from __future__ import annotations

from typing import Any

from toque.api import constants
from toque.api import trainingjob as tj
from toque.resources import names, pods
from toque.resources import trainingjob_job as jobs

OWNER = jobs.Owner("demo", "team-a", "1234-uid")
CONFIG = pods.BuildConfig(runtime_image="toque:test")


def build(**spec: Any) -> dict[str, Any]:
    model = tj.TrainingJobSpec.model_validate({"entrypoint": "pkg.mod:fn", **spec})
    return jobs.build_job(OWNER, model, CONFIG)


def container(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return result


def test_requested_resources_and_scheduling_are_carried_over() -> None:
    job = build(
        resources={"cpu": "2", "memory": "4Gi", "gpu": 2},
        nodeSelector={"pool": "a100"},
        tolerations=[{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        priorityClassName="training-high",
        backoffLimit=4,
        activeDeadlineSeconds=600,
        ttlSecondsAfterFinished=30,
        suspend=True,
    )
    res = container(job)["resources"]
    assert res == {
        "requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": "2"},
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "spot", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["affinity"]["nodeAffinity"] is not None
    assert pod["priorityClassName"] == "training-high"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (4, 600)
    assert (spec["ttlSecondsAfterFinished"], spec["suspend"]) == (30, True)


def test_custom_gpu_resource_name() -> None:
    job = build(resources={"gpu": 1, "gpuResourceName": "amd.com/gpu"})
    assert container(job)["resources"]["limits"] == {"amd.com/gpu": "1"}
    tolerations = job["spec"]["template"]["spec"]["tolerations"]
    assert tolerations[0]["key"] == "amd.com/gpu"


def test_pod_meets_restricted_pod_security() -> None:
    job = build()
    pod = job["spec"]["template"]["spec"]
    sc = container(job)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert all("hostPath" not in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is False


def test_owner_reference_labels_and_defaults() -> None:
    job = build()
    meta = job["metadata"]
    assert meta["name"] == "demo" and meta["namespace"] == "team-a"
    ref = meta["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("TrainingJob", "1234-uid", True)
    assert meta["labels"][constants.LABEL_TRAININGJOB_UID] == "1234-uid"
    assert job["spec"]["backoffLimit"] == constants.DEFAULT_BACKOFF_LIMIT
    assert job["spec"]["suspend"] is False
    assert container(job)["image"] == "toque:test"
    assert container(job)["args"] == ["--entrypoint", "pkg.mod:fn"]


def test_command_replaces_the_runtime() -> None:
    job = build(entrypoint=None, command=["python", "train.py"], args=["--x"])
    assert container(job)["command"] == ["python", "train.py"]
    assert container(job)["args"] == ["--x"]


def test_permanent_failures_are_not_retried() -> None:
    rules = build()["spec"]["podFailurePolicy"]["rules"]
    fail = next(r for r in rules if r["action"] == "FailJob")
    assert fail["onExitCodes"]["values"] == [jobs.PERMANENT_FAILURE_EXIT_CODE]


def test_long_names_fit_a_label_and_stay_stable() -> None:
    long = "x" * 200
    first = names.child_name(long)
    assert len(first) <= 63 and first == names.child_name(long)
    assert names.child_name("x" * 199) != first


def test_template_hash_tracks_the_pod_template_only() -> None:
    a = build(suspend=False)
    b = build(suspend=True)
    c = build(image="other:1")
    key = jobs.TEMPLATE_HASH_ANNOTATION
    assert a["metadata"]["annotations"][key] == b["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] != c["metadata"]["annotations"][key]


def test_tracking_uri_credentials_never_reach_the_pod_spec() -> None:
    from toque.resources import pods as pod_settings

    config = pod_settings.BuildConfig(
        mlflow_tracking_uri="https://alice:S3cretPw@mlflow.example:5000/prefix",
        credentials_secret="store-creds",
    )
    env = {e["name"]: e for e in pod_settings.store_env(config)}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example:5000/prefix"
    assert "S3cretPw" not in str(env)
    password = env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "store-creds", "key": "MLFLOW_TRACKING_PASSWORD", "optional": True}
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"]["value"] == "true"


def test_yaml_number_quantities_are_written_as_kubernetes_writes_them() -> None:
    from toque.resources import pods as pod_settings

    assert pod_settings.quantity(0.5) == "0.5"
    assert pod_settings.quantity(1e9) == "1000000000"
    assert pod_settings.quantity(2) == "2"
    assert pod_settings.quantity("500m") == "500m"
