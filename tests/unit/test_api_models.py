"""The pydantic models accept every example and refuse what the CRD schema refuses."""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from toque.api import driftmonitor, modelversion, trainingjob

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
