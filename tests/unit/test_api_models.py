"""The pydantic models accept every example and refuse what the CRD schema refuses."""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from toque.api import driftmonitor, modelversion, schema, trainingjob

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS: dict[str, type[pydantic.BaseModel]] = {
    "TrainingJob": trainingjob.TrainingJobSpec,
    "ModelVersion": modelversion.ModelVersionSpec,
    "DriftMonitor": driftmonitor.DriftMonitorSpec,
}


def _example_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in SPECS:
                out.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return out


@pytest.mark.parametrize(("name", "doc"), _example_docs(), ids=[n for n, _ in _example_docs()])
def test_examples_validate(name: str, doc: dict[str, Any]) -> None:
    SPECS[doc["kind"]].model_validate(doc["spec"])


BASE = {"entrypoint": "pkg.mod:fn"}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"entrypoint": "not an entrypoint"}, "entrypoint"),
        ({"datasets": [{"ref": "Bad Name@sha256:zz"}]}, "ref"),
        ({"backoffLimit": -1}, "backoffLimit"),
        ({"resources": {"gpu": -1}}, "gpu"),
        ({"promote": {"rollout": {"steps": [{"setWeight": 150}]}}}, "setWeight"),
    ],
)
def test_trainingjob_spec_refuses(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        trainingjob.TrainingJobSpec.model_validate({**BASE, **patch})
    assert field in str(info.value)


def test_round_trip_keeps_kubernetes_names() -> None:
    spec = trainingjob.TrainingJobSpec.model_validate(
        {**BASE, "activeDeadlineSeconds": 60, "resources": {"cpu": "500m", "gpu": 1}}
    )
    out = spec.to_kube()
    assert out["activeDeadlineSeconds"] == 60
    assert out["resources"]["gpuResourceName"] == "nvidia.com/gpu"
    assert trainingjob.TrainingJobSpec.model_validate(out) == spec


def test_a_model_uri_needs_a_digest_unless_the_user_opts_out() -> None:
    uri = {"modelUri": "s3://models/churn/1"}
    with pytest.raises(pydantic.ValidationError, match="allowUnverified"):
        modelversion.ModelSource.model_validate(uri)
    assert not modelversion.ModelSource.model_validate({"trainingJob": "t"}).allow_unverified
    opted_out = modelversion.ModelSource.model_validate({**uri, "allowUnverified": True})
    assert opted_out.to_kube() == {**uri, "allowUnverified": True}
    digest = "sha256:" + "ab" * 32
    modelversion.ModelSource.model_validate({**uri, "modelDigest": digest})


def test_affinity_is_typed_but_stays_the_dict_the_pod_spec_takes() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
            }
        }
    }
    spec = trainingjob.TrainingJobSpec.model_validate({**BASE, "affinity": affinity})
    assert spec.affinity == affinity
    assert spec.to_kube()["affinity"] == affinity
    with pytest.raises(pydantic.ValidationError, match="nodeAffinty"):
        trainingjob.TrainingJobSpec.model_validate({**BASE, "affinity": {"nodeAffinty": {}}})


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"backoffLimit": "3"}, "backoffLimit"),
        ({"suspend": "yes"}, "suspend"),
        ({"nodeSelector": {"gpu": True}}, "nodeSelector"),
        ({"env": [{"name": "PORT", "value": 8080}]}, "value"),
    ],
)
def test_types_are_strict_as_the_api_servers(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        trainingjob.TrainingJobSpec.model_validate({**BASE, **patch})
    assert field in str(info.value)


def _models() -> list[type[schema.KubeModel]]:
    found: list[type[schema.KubeModel]] = []
    todo: list[type[schema.KubeModel]] = [schema.KubeModel]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_every_cel_rule_has_its_python_twin() -> None:
    """pydantic checks what the API server checks, except transitions (oldSelf), which only
    the API server sees."""
    rules = [r for cls in _models() for r in cls.__dict__.get("cel_rules", ())]
    assert len(rules) > 20
    for rule in rules:
        assert (rule.check is None) == ("oldSelf" in rule.cel), rule.cel
