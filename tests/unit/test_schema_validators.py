"""The reusable types of ``toque.api`` accept every form Kubernetes (or MLflow, or the CronJob
parser) accepts and refuse the rest with a message that echoes the value or names the rule.

The patterns were checked against the real parsers while writing them (``isQuantity`` of the
API server, ``github.com/distribution/reference``, ``robfig/cron``); these tables keep them.
"""

from __future__ import annotations

import decimal
from typing import Any

import pydantic
import pytest

from toque.api import common, kubetypes, schema, trainingjob
from toque.api import modelversion as mv
from toque.api import validators as v

DIGEST = "sha256:" + "0123456789abcdef" * 4


def refusal(model: type[pydantic.BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(data, by_name=False)
    return str(info.value)


# -- quantities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0.5, 2, "2", "500m", "0.5", "1Gi", "1.5Gi", "512Mi", "1e3", "1E3", "1e-1", "+1.", ".5",
     "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Ei", "100u", "5n", 1073741824, 1e-3],
)  # fmt: skip
def test_quantities_in_every_kubernetes_form_are_accepted(value: Any) -> None:
    resources = common.ComputeResources.model_validate({"cpu": value, "memory": value})
    assert resources.cpu == value  # kept as written: a number stays a number


@pytest.mark.parametrize(
    "value",
    ["abc", "-1", "0", "0.0", "00", 0, 0.0, -0.5, "1GB", "512K", "1 Gi", "1.5.5", "1e", "1mi",
     "0x10", "1_000", "", " 1", True, False, ["1"], {"v": 1}, float("inf"), "1" * 65],
)  # fmt: skip
def test_bad_quantities_are_refused_with_the_value_and_the_word_quantity(value: Any) -> None:
    message = refusal(common.ComputeResources, {"cpu": value})
    assert "cpu" in message and "quantity" in message
    assert repr(value)[:20] in message


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("1Ki", "1024"), ("1e3", "1000"), ("1.5Gi", "1610612736"), (".5", "0.5"),
     ("+1.", "1"), ("2E", "2e18"), ("1E3", "1000"), ("3n", "3e-9")],
)  # fmt: skip
def test_quantity_values(text: str, value: str) -> None:
    assert v.parse_quantity(text) == decimal.Decimal(value)


@pytest.mark.parametrize(
    ("resource", "divisor", "ok"),
    [("limits.cpu", "1m", True), ("requests.cpu", 1, True), ("limits.cpu", "1000m", True),
     ("limits.cpu", "1Mi", False), ("limits.memory", "1Mi", True), ("limits.memory", "1m", False),
     ("requests.ephemeral-storage", "1G", True), ("limits.hugepages-2Mi", "1Ki", True),
     ("limits.memory", "2Mi", False), ("limits.memory", "x", False)],
)  # fmt: skip
def test_resource_field_divisors(resource: str, divisor: int | str, ok: bool) -> None:
    assert v.divisor_ok(resource, divisor) is ok


# -- labels, annotations, node selectors -----------------------------------------------------

GOOD_KEYS = ["a", "app", "App_Name.v-2", "example.com/name", "kubernetes.io/arch",
             "a.b.c-d/x", "k" * 63, ".".join(["a" * 63] * 3) + ".b/x"]  # fmt: skip
BAD_KEYS = ["", "-a", "a-", "a b", "Example.com/a", "a/b/c", "/a", "a/", "k" * 64,
            ".".join(["a" * 63] * 4) + ".b/x", "a_.b/x", "ünïcode"]  # fmt: skip


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_label_keys_kubernetes_accepts(key: str) -> None:
    spec = trainingjob.TrainingJobSpec.model_validate(
        {"entrypoint": "a:b", "nodeSelector": {key: "v"}, "podMetadata": {"labels": {key: ""}}}
    )
    assert spec.node_selector == {key: "v"}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_label_keys_kubernetes_refuses(key: str) -> None:
    message = refusal(
        trainingjob.TrainingJobSpec, {"entrypoint": "a:b", "nodeSelector": {key: "v"}}
    )
    assert "nodeSelector" in message and (repr(key) in message or "prefix" in message)


@pytest.mark.parametrize("value", ["", "a", "v1.0_beta-2", "x" * 63])
def test_label_values_kubernetes_accepts(value: str) -> None:
    kubetypes.LabelSelector.model_validate({"matchLabels": {"k": value}})


@pytest.mark.parametrize("value", ["-a", "a-", "a b", "x" * 64, "a/b", "ä"])
def test_label_values_kubernetes_refuses(value: str) -> None:
    refusal(kubetypes.LabelSelector, {"matchLabels": {"k": value}})


def test_annotation_keys_may_have_an_upper_case_prefix_and_values_any_text() -> None:
    meta = common.PodMetadata.model_validate(
        {"annotations": {"Example.COM/Owner": "Jane <j@x>\nline two"}}
    )
    assert meta.annotations == {"Example.COM/Owner": "Jane <j@x>\nline two"}


def test_keys_the_operator_sets_are_refused() -> None:
    assert "reserved" in refusal(common.PodMetadata, {"labels": {"toque.dev/trainingjob": "x"}})
    # Other keys under toque.dev/ stay the user's (the e2e harness uses some).
    common.PodMetadata.model_validate({"annotations": {"toque.dev/simulate-exit-code": "1"}})


# -- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    ["python", "python:3.11-slim", "library/python", "docker.io/library/python:3.11",
     "localhost:5000/team/train:v1", "ghcr.io/acme/train@" + DIGEST,
     "ghcr.io/acme/train:v1@" + DIGEST, "[::1]:5000/train", "MyRegistry/app", "a__b/c-d.e_f",
     "1.2.3.4:5000/x", "x:" + "t" * 128, "x:_tag", "host_name.io/x"],
)  # fmt: skip
def test_image_references_docker_accepts(image: str) -> None:
    mv.ServingSpec.model_validate({"image": image})


@pytest.mark.parametrize(
    "image",
    ["", "Ubuntu", "Registry/Serve", "my image", "https://ghcr.io/x", "x:", "x:v1:v2",
     "x@sha256:abc", "x@md5:" + "a" * 32, "x@sha256:" + "A" * 64, "a___b", "a-", "-a", "a//b",
     "/a", "a/", "x:" + "t" * 129, "x:.tag", "x:-tag"],
)  # fmt: skip
def test_image_references_docker_refuses(image: str) -> None:
    message = refusal(mv.ServingSpec, {"image": image})
    assert "image" in message and repr(image)[:20] in message


# -- cron ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
     "* * * * *", "*/15 0-6,22-23 1-31/2 JAN-jun mon-FRI", "5/10 12 ? * 0", "00 00 01 01 00",
     "0 0 * * sun-sat", "0\t0  * * *", " 0 0 * * * ", "59 23 31 12 6", "0-0 * * * *"],
)  # fmt: skip
def test_schedules_the_cronjob_parser_accepts(schedule: str) -> None:
    dm_spec = {"model": "m", "reference": {"trainingData": True}, "mode": "scheduled"}
    from toque.api import driftmonitor

    driftmonitor.DriftMonitorSpec.model_validate({**dm_spec, "schedule": schedule})


@pytest.mark.parametrize(
    "schedule",
    ["60 * * * *", "0 24 * * *", "0 0 32 * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 7",
     "*/0 * * * *", "0 0-25 * * *", "0 0 1 JANUARY *", "@fortnightly", "@every 5m", "0 0 * *",
     "0 0 0 * * *", "every day", "5-1 * * * *", "0 0 * * sat-sun", "0 0 * DEC-jan *",
     "0 0 L * *", "0 0 * * 1#2", "@daily ", " @daily", ""],
)  # fmt: skip
def test_schedules_the_cronjob_parser_refuses(schedule: str) -> None:
    from toque.api import driftmonitor

    dm_spec = {"model": "m", "reference": {"trainingData": True}, "mode": "scheduled"}
    message = refusal(driftmonitor.DriftMonitorSpec, {**dm_spec, "schedule": schedule})
    assert "schedule" in message


# -- durations, aliases, URIs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), (".5s", 0.5),
     ("1h0m0s", 3600), ("100us", 1e-4), ("2.s", 2)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert schema.duration_seconds(text) == pytest.approx(seconds)
    mv.PauseStep.model_validate({"duration": text})


@pytest.mark.parametrize("text", ["0s", "0m", "0h0m", "0.0s", ".0s", "00ms"])
def test_zero_durations_are_refused_where_a_positive_one_is_needed(text: str) -> None:
    assert "above zero" in refusal(mv.PauseStep, {"duration": text})
    assert "above zero" in refusal(mv.Analysis, {"interval": text})


@pytest.mark.parametrize("text", ["5 minutes", "1d", "-5m", "5", "m", "1h 30m", "1H"])
def test_malformed_durations_are_refused(text: str) -> None:
    assert repr(text) in refusal(mv.PauseStep, {"duration": text})


@pytest.mark.parametrize("alias", ["latest", "LATEST", "Latest", "v1", "V12", "v007"])
def test_aliases_mlflow_reserves_are_refused(alias: str) -> None:
    assert "reserved by MLflow" in refusal(mv.ModelVersionSpec, _mv(alias=alias))


@pytest.mark.parametrize("alias", ["champion", "latest-good", "v2-candidate", "version2", "vX"])
def test_aliases_mlflow_allows_are_accepted(alias: str) -> None:
    mv.ModelVersionSpec.model_validate(_mv(alias=alias))


@pytest.mark.parametrize(
    "uri",
    ["s3://models/churn/1/model", "runs:/" + "a" * 32 + "/model", "models:/churn@champion",
     "models:/churn/3", "mlflow-artifacts:/1/abc/artifacts/model",
     "mlflow-artifacts://mlflow:5000/1/x/...x", "s3://models/a/.hidden/m"],
)  # fmt: skip
def test_model_uris_accepted(uri: str) -> None:
    mv.ModelSource.model_validate({"modelUri": uri, "modelDigest": DIGEST})


@pytest.mark.parametrize(
    "uri",
    ["s3://models/../x", "s3://models/a/..", "runs:/" + "a" * 32 + "/%2e%2e/m",
     "models:/./churn", "file:///tmp/m", "s3://models", "runs:/abc/model", "http://x/m",
     "s3://models/a b"],
)  # fmt: skip
def test_model_uris_refused(uri: str) -> None:
    message = refusal(mv.ModelSource, {"modelUri": uri, "modelDigest": DIGEST})
    assert "modelUri" in message


def _mv(**spec: Any) -> dict[str, Any]:
    return {"model": "m", "source": {"trainingJob": "t"}, **spec}
