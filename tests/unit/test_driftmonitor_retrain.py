"""The retraining TrainingJob a DriftMonitor clones (``toque.reconcile.retrain``): the
template's spec on the new data tag, a name fixed by the monitor and the evaluation, the
lineage in labels and annotations, and no owner (a monitor's deletion keeps its models)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from toque.api import driftmonitor as dm
from toque.api import trainingjob as tj
from toque.reconcile import retrain

WHEN = dt.datetime(2026, 11, 27, 10, 5, 9, tzinfo=dt.UTC)
DIGEST = "sha256:" + "c" * 64


def template(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "toque.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "churn-train",
            "namespace": "ns",
            "uid": "uid-t",
            "resourceVersion": "42",
            "labels": {"app.kubernetes.io/instance": "argocd-app"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {
            "entrypoint": "pkg.train:main",
            "datasets": [
                {"ref": f"churn-data@{DIGEST}", "alias": "train"},
                {"ref": "holidays:2025"},
                {"ref": "regions"},
            ],
            "code": {"ref": "churn-code:v7"},
            "params": {"depth": 6},
            "model": {"name": "churn"},
            "promote": {"alias": "champion"},
            **spec,
        },
        "status": {"phase": "Succeeded", "mlflowRunId": "a" * 32},
    }


def clone(source: dict[str, Any] | None = None, monitor: str = "churn-drift") -> dict[str, Any]:
    return retrain.clone(
        source or template(), monitor, "ns", WHEN, "latest", "drifted features: age, plan"
    )


@pytest.mark.parametrize(
    ("ref", "out"),
    [
        (f"churn-data@{DIGEST}", "churn-data:fresh"),
        ("churn-data:v1", "churn-data:fresh"),
        ("churn-data", "churn-data:fresh"),
        ("my.data_set-2:latest", "my.data_set-2:fresh"),
    ],
)
def test_every_form_of_dataset_ref_is_re_pointed_to_the_tag(ref: str, out: str) -> None:
    assert retrain.retag(ref, "fresh") == out


def test_the_clone_reads_every_dataset_at_the_tag_and_keeps_the_rest_of_the_spec() -> None:
    out = clone()
    spec = out["spec"]
    assert spec["datasets"] == [
        {"ref": "churn-data:latest", "alias": "train"},
        {"ref": "holidays:latest"},
        {"ref": "regions:latest"},
    ]
    original = template()["spec"]
    for key in ("entrypoint", "code", "params", "model", "promote"):
        assert spec[key] == original[key], key
    # The aliases the user's code sees do not change with the tag.
    parsed = tj.TrainingJobSpec.model_validate(spec)
    assert [tj.dataset_alias(d) for d in parsed.datasets or []] == ["train", "holidays", "regions"]


def test_the_name_follows_from_the_monitor_and_the_evaluation_time() -> None:
    assert clone()["metadata"]["name"] == "churn-drift-retrain-20261127-100509"
    assert clone() == clone()
    local = WHEN.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert retrain.job_name("churn-drift", local) == "churn-drift-retrain-20261127-100509"


def test_a_long_monitor_name_gives_a_name_that_fits_a_label_value() -> None:
    name = clone(monitor="m" * 200)["metadata"]["name"]
    assert len(name) <= 63 and name == retrain.job_name("m" * 200, WHEN)
    assert name != retrain.job_name("m" * 199 + "n", WHEN)


def test_the_clone_names_its_monitor_evaluation_reason_and_template() -> None:
    meta = clone()["metadata"]
    assert meta["namespace"] == "ns"
    assert meta["labels"][dm.LABEL_DRIFT_MONITOR] == "churn-drift"
    assert meta["annotations"] == {
        dm.ANNOTATION_TRIGGERED_BY: "DriftMonitor/churn-drift",
        dm.ANNOTATION_TRIGGER_EVALUATION: "2026-11-27T10:05:09Z",
        dm.ANNOTATION_TRIGGER_REASON: "drifted features: age, plan",
        dm.ANNOTATION_RETRAINED_FROM: "churn-train",
    }


def test_the_clone_has_no_owner_no_status_and_nothing_of_the_template_s_metadata() -> None:
    out = clone()
    assert "ownerReferences" not in out["metadata"] and "status" not in out
    assert set(out["metadata"]) == {"name", "namespace", "labels", "annotations"}
    assert "app.kubernetes.io/instance" not in out["metadata"]["labels"]


def test_a_suspended_template_gives_a_clone_that_runs() -> None:
    assert "suspend" not in clone(template(suspend=True))["spec"]


def test_the_template_is_not_modified() -> None:
    source = template()
    before = copy.deepcopy(source)
    clone(source)
    assert source == before


def test_a_very_long_reason_is_cut() -> None:
    out = retrain.clone(template(), "m", "ns", WHEN, "latest", "x" * 5000)
    assert len(out["metadata"]["annotations"][dm.ANNOTATION_TRIGGER_REASON]) == 1000


def test_a_template_whose_spec_no_longer_validates_cannot_be_cloned() -> None:
    broken = template(entrypoint=None, command=None)
    with pytest.raises(retrain.CloneError, match="churn-train cannot be cloned"):
        clone(broken)


def test_on_drift_training_job_wins_over_the_live_version_s_own() -> None:
    base = {"model": "churn", "reference": {"trainingData": True}}
    chosen = dm.DriftMonitorSpec.model_validate({**base, "onDrift": {"trainingJob": "recipe"}})
    default = dm.DriftMonitorSpec.model_validate({**base, "onDrift": {}})
    assert retrain.template_name(chosen, "made-it") == "recipe"
    assert retrain.template_name(default, "made-it") == "made-it"
    assert retrain.template_name(default, None) is None
