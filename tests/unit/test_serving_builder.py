"""The serving Deployment, the model Service and names derived from model names."""

from __future__ import annotations

import pydantic
import pytest

from toque.api import constants
from toque.api import modelversion as mv
from toque.resources import pods, serving

OWNER = serving.Owner("fraud-v2", "ns", "uid-2")
CONFIG = pods.BuildConfig(
    runtime_image="toque:1",
    mlflow_tracking_uri="http://mlflow:5000",
    s3_endpoint="http://minio:9000",
    data_bucket="toque-data",
    credentials_secret="s3",
)
SERVED = serving.Served("Fraud.Model", "2", "models:/Fraud.Model/2", "sha256:" + "a" * 64)


def build(**serving_spec: object) -> dict:
    spec = mv.ModelVersionSpec.model_validate(
        {"model": "Fraud.Model", "source": {"runId": "a" * 32}, "serving": serving_spec}
    )
    return serving.deployment(OWNER, spec, SERVED, 3, CONFIG)


def test_deployment_serves_the_registry_version_with_its_digest() -> None:
    d = build(port=9000, sampleRate=0.05)
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["ownerReferences"][0]["uid"] == "uid-2"
    container = d["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:2] == ["serve", "--model-uri"] and "models:/Fraud.Model/2" in args
    assert args[args.index("--expected-digest") + 1] == SERVED.digest
    assert args[args.index("--host") + 1] == "0.0.0.0"  # pod IP and localhost (port-forward)
    assert args[args.index("--sample-rate") + 1] == "0.05"
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    secrets = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert {e["name"] for e in secrets} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }


def test_serving_pods_are_restricted_and_start_out_of_traffic() -> None:
    template = build()["spec"]["template"]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert constants.LABEL_TRAFFIC not in template["metadata"]["labels"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_gpu_serving_tolerates_the_gpu_taint_and_keeps_user_tolerations() -> None:
    pod = build(
        resources={"gpu": 1},
        nodeSelector={"pool": "gpu"},
        tolerations=[{"key": "spot", "operator": "Exists"}],
    )["spec"]["template"]["spec"]
    keys = {t["key"] for t in pod["tolerations"]}
    assert keys == {"spot", "nvidia.com/gpu"}
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_names_derived_from_model_names_are_valid_kubernetes_names() -> None:
    assert serving.service_name("iris") == "iris"
    name = serving.service_name("Fraud.Model_v2")
    assert name.startswith("fraud-model-v2-") and len(name) <= 63
    assert serving.service_name("9lives")[0].isalpha()
    long = serving.service_name("x" * 128)
    assert len(long) <= 63
    assert serving.model_label("Fraud.Model") == "Fraud.Model"
    label = serving.model_label("a" * 100)
    assert len(label) <= 63 and label[-1].isalnum()


def test_the_model_service_selects_admitted_pods_of_the_model() -> None:
    svc = serving.model_service("ns", "Fraud.Model", [OWNER])
    assert svc["spec"]["selector"] == {
        constants.LABEL_MODEL: "Fraud.Model",
        constants.LABEL_TRAFFIC: "on",
    }
    assert svc["metadata"]["ownerReferences"][0]["controller"] is False


def test_a_version_without_digest_is_served_unverified_only_when_the_user_opted_out() -> None:
    from toque.api import modelversion as mv_api
    from toque.resources import pods as pod_settings
    from toque.resources import serving as builder

    owner = builder.Owner("m-v1", "ns", "uid-1")
    spec = mv_api.ModelVersionSpec.model_validate(
        {"model": "m", "source": {"modelUri": "s3://models/m", "allowUnverified": True}}
    )
    config = pod_settings.BuildConfig()
    plain = builder.Served("m", "1", "models:/ns.m/1", None)
    opted = builder.Served("m", "1", "models:/ns.m/1", None, allow_unverified=True)
    args_plain = builder.deployment(owner, spec, plain, 1, config)["spec"]["template"]["spec"]
    args_opted = builder.deployment(owner, spec, opted, 1, config)["spec"]["template"]["spec"]
    assert "--allow-unverified" not in args_plain["containers"][0]["args"]
    assert "--allow-unverified" in args_opted["containers"][0]["args"]


def test_batching_reaches_the_server_as_flags() -> None:
    args = build(batching={"maxRows": 16, "maxLatencyMs": 5})["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[args.index("--batch-max-rows") + 1] == "16"
    assert args[args.index("--batch-max-latency-ms") + 1] == "5.0"
    plain = build()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--batch-max-rows" not in plain  # the server's defaults


@pytest.mark.parametrize(
    "batching",
    [{"maxRows": 0}, {"maxRows": 70000}, {"maxLatencyMs": -1}, {"maxLatencyMs": 1001}],
    ids=["no-rows", "too-many-rows", "negative-wait", "wait-over-a-second"],
)
def test_batching_limits_out_of_range_are_rejected(batching: dict[str, int]) -> None:
    with pytest.raises(pydantic.ValidationError):
        build(batching=batching)
