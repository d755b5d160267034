"""The pydantic models judge the corpus of hand-written resources as the CRD schemas do.

``tests/corpus/valid`` holds resources a user may write, ``tests/corpus/invalid`` ones with
one defect each; every file says in its annotations what is expected and which field is at
fault (``tests/e2e/test_bad_input.py`` applies the same files to a real API server). The
operator validates with these models at reconcile time, so a resource the API server admits
must pass here, and one it refuses must not slip through here either.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pydantic
import pytest
import yaml

from toque.api import driftmonitor, modelversion, trainingjob

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
SPECS: dict[str, type[pydantic.BaseModel]] = {
    "TrainingJob": trainingjob.TrainingJobSpec,
    "ModelVersion": modelversion.ModelVersionSpec,
    "DriftMonitor": driftmonitor.DriftMonitorSpec,
}
ANNOTATION = "corpus.toque.dev/"


def load(path: pathlib.Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The resource and its corpus annotations (expect, field, says, why)."""
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    notes = {
        k.removeprefix(ANNOTATION): v
        for k, v in doc["metadata"]["annotations"].items()
        if k.startswith(ANNOTATION)
    }
    return doc, notes


def corpus(expect: str) -> list[pathlib.Path]:
    return sorted((CORPUS / expect).glob("*.yaml"))


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the API server writes field paths."""
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def names_field(errors: list[tuple[str, str]], field: str) -> bool:
    """An error sits at ``field`` (or inside it), or at a parent and names it."""
    name = field.rsplit(".", 1)[-1].split("[")[0]
    for path, message in errors:
        if path == field or path.startswith((f"{field}.", f"{field}[")):
            return True
        if field.startswith(path) and name in message:
            return True
    return False


def validate(doc: dict[str, Any]) -> pydantic.BaseModel:
    # by_name=False: only the Kubernetes (camelCase) names, as the API server reads them.
    return SPECS[doc["kind"]].model_validate(doc["spec"], by_name=False)


def test_the_corpus_is_large_and_covers_every_kind() -> None:
    valid, invalid = corpus("valid"), corpus("invalid")
    assert len(valid) >= 40 and len(invalid) >= 80
    for paths in (valid, invalid):
        assert {load(p)[0]["kind"] for p in paths} == set(SPECS)
    for path in valid + invalid:
        doc, notes = load(path)
        assert doc["metadata"]["name"] == path.stem
        assert notes["expect"] == path.parent.name
        assert notes.get("why"), f"{path.name}: say why"
        if notes["expect"] == "invalid":
            assert notes.get("field", "").startswith("spec"), f"{path.name}: name the field"


@pytest.mark.parametrize("path", corpus("valid"), ids=lambda p: p.stem)
def test_valid_resource_is_accepted(path: pathlib.Path) -> None:
    doc, _ = load(path)
    validate(doc)


@pytest.mark.parametrize("path", corpus("invalid"), ids=lambda p: p.stem)
def test_invalid_resource_is_refused_naming_the_field(path: pathlib.Path) -> None:
    doc, notes = load(path)
    with pytest.raises(pydantic.ValidationError) as info:
        validate(doc)
    errors = [(field_path(e["loc"]), e["msg"]) for e in info.value.errors()]
    assert names_field(errors, notes["field"]), f"{notes['field']} not named in {errors}"
    if "says" in notes:
        text = str(info.value) + "".join(repr(e.get("input")) for e in info.value.errors())
        assert notes["says"] in text, f"{notes['says']!r} not in {text}"


@pytest.mark.parametrize("path", corpus("valid"), ids=lambda p: p.stem)
def test_valid_resource_round_trips(path: pathlib.Path) -> None:
    """What the operator writes back (e.g. the ModelVersion a TrainingJob creates) validates
    again and keeps the Kubernetes names."""
    doc, _ = load(path)
    spec = validate(doc)
    out = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert SPECS[doc["kind"]].model_validate(out, by_name=False) == spec
