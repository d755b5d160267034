"""The operator's watches of pods, Jobs and Deployments are filtered by the API server."""

from __future__ import annotations

import kopf
from kopf._cogs.structs import references

from toque.handlers import settings
from toque.resources import serving, trainingjob_job


def _selectors(group: str, version: str, plural: str) -> list[str]:
    s = kopf.OperatorSettings()
    settings.watch_only_owned_children(s)
    resource = references.Resource(group=group, version=version, plural=plural)
    return list(s.watching.label_selectors.collect(resource))


def test_pod_job_and_deployment_watches_carry_the_managed_by_selector() -> None:
    for group, version, plural in (
        ("", "v1", "pods"),
        ("batch", "v1", "jobs"),
        ("apps", "v1", "deployments"),
    ):
        assert _selectors(group, version, plural) == ["app.kubernetes.io/managed-by=toque"]


def test_custom_resource_watches_are_not_filtered() -> None:
    assert _selectors("toque.dev", "v1alpha1", "modelversions") == []


def test_training_and_serving_pods_match_the_watch_selector() -> None:
    key, value = settings.OWNED_SELECTOR.split("=")
    owner = trainingjob_job.Owner("demo", "ns", "uid")
    assert trainingjob_job.labels(owner)[key] == value
    served = serving.pod_labels(serving.Owner("demo-v1", "ns", "uid"), "demo", "1")
    assert served[key] == value
