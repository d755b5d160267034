"""The CRDs on disk are exactly what the pydantic models generate, and they are structural."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from toque.api import constants, crdgen

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["crds", "helm/toque/crds"])
@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_crd_files_are_up_to_date(directory: str, info: crdgen.KindInfo) -> None:
    path = ROOT / directory / f"{constants.GROUP}_{info.plural}.yaml"
    assert path.exists(), f"{path} missing: run `make crds`"
    assert path.read_text() == crdgen.render(info), f"{path} is stale: run `make crds`"


def _walk(node: Any, path: str = "$") -> list[str]:
    """Paths that break the structural-schema rules the API server enforces."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return problems
    if "$ref" in node:
        problems.append(f"{path}: $ref")
    has_type = "type" in node
    special = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if not has_type and not special:
        problems.append(f"{path}: no type")
    if "anyOf" in node:
        problems.append(f"{path}: anyOf")
    for name, child in (node.get("properties") or {}).items():
        problems += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_schemas_are_structural(info: crdgen.KindInfo) -> None:
    crd = crdgen.crd(info)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []


@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_crd_has_status_subresource_columns_and_names(info: crdgen.KindInfo) -> None:
    crd = yaml.safe_load(crdgen.render(info))
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert any(c["name"] == "Phase" for c in version["additionalPrinterColumns"])
    assert crd["spec"]["names"]["shortNames"] == list(info.short_names)
    assert crd["spec"]["names"]["categories"] == ["toque"]


def test_cel_rules_are_declared_next_to_the_types() -> None:
    tj = crdgen.crd(crdgen.KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = tj["properties"]["spec"]["x-kubernetes-validations"]
    assert any("entrypoint" in r["rule"] and "command" in r["rule"] for r in rules)


def _spec_schema(kind: str) -> dict[str, Any]:
    info = next(i for i in crdgen.KINDS if i.kind == kind)
    version = crdgen.crd(info)["spec"]["versions"][0]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def test_model_and_source_of_a_model_version_are_immutable() -> None:
    spec = _spec_schema("ModelVersion")
    for field in ("model", "source"):
        rules = spec["properties"][field]["x-kubernetes-validations"]
        assert any(r["rule"] == "self == oldSelf" and "immutable" in r["message"] for r in rules)
    source = spec["properties"]["source"]
    assert source["properties"]["allowUnverified"]["default"] is False
    assert any("allowUnverified" in r["rule"] for r in source["x-kubernetes-validations"])


def test_quantities_take_numbers_and_strings() -> None:
    """`cpu: 0.5` is a JSON number: int-or-string would refuse it, so the field is untyped
    and validated per JSON kind (pattern for strings, minimum for numbers)."""
    cpu = _spec_schema("TrainingJob")["properties"]["resources"]["properties"]["cpu"]
    assert "type" not in cpu and cpu["x-kubernetes-preserve-unknown-fields"] is True
    assert cpu["minimum"] == 0 and cpu["exclusiveMinimum"] is True and cpu["pattern"]
    assert cpu["maxProperties"] < cpu["minProperties"] and cpu["maxItems"] < cpu["minItems"]


def _messages(node: Any) -> list[str]:
    if isinstance(node, list):
        return [m for n in node for m in _messages(n)]
    if not isinstance(node, dict):
        return []
    own = [r.get("messageExpression", "") for r in node.get("x-kubernetes-validations", [])]
    return own + [m for v in node.values() for m in _messages(v)]


@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_message_expressions_stay_cheap(info: crdgen.KindInfo) -> None:
    """The API server estimates string(<number>) and fields of filter() results as
    unbounded strings and refuses the CRD; messages built from them must not come back."""
    for message in _messages(crdgen.crd(info)):
        assert "string(self." not in message and ")[0]." not in message, message
