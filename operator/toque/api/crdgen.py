"""Generates ``crds/*.yaml`` from the pydantic models (``make crds``; the stale-check test).

Pydantic emits JSON Schema with ``$defs``/``$ref`` and ``anyOf [X, null]`` for optional
fields; the API server wants a *structural* OpenAPI v3 schema, so refs are inlined, null
branches dropped, and titles removed. Printer columns, short names and categories are declared
here next to the kinds they describe.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pathlib
import sys
from typing import Any

import pydantic
import yaml

import toque
from toque.api import constants, driftmonitor, modelversion, trainingjob

_DROP_KEYS = {"title", "discriminator"}
_RULES = "x-kubernetes-validations"


@dataclasses.dataclass(frozen=True)
class KindInfo:
    """Everything about a kind that is not its schema."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_model: type[pydantic.BaseModel]
    status_model: type[pydantic.BaseModel]
    columns: tuple[tuple[str, str, str, str], ...]  # name, type, jsonPath, description
    description: str


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="TrainingJob",
        plural="trainingjobs",
        short_names=("tj",),
        spec_model=trainingjob.TrainingJobSpec,
        status_model=trainingjob.TrainingJobStatus,
        columns=(
            ("Phase", "string", ".status.phase", "Summary phase of the run"),
            ("Model", "string", ".spec.model.name", "Registered model name"),
            ("Attempts", "integer", ".status.attempts", "Pods started so far"),
            ("Job", "string", ".status.jobName", "The batch/v1 Job running it"),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ),
        description="A training run on a CPU or GPU node, tracked in MLflow and gated.",
    ),
    KindInfo(
        kind="ModelVersion",
        plural="modelversions",
        short_names=("mv",),
        spec_model=modelversion.ModelVersionSpec,
        status_model=modelversion.ModelVersionStatus,
        columns=(
            ("Model", "string", ".spec.model", "Registered model name"),
            ("Version", "string", ".status.registry.version", "Registry version"),
            ("Phase", "string", ".status.phase", "Rollout phase"),
            ("Step", "integer", ".status.currentStep", "Current rollout step"),
            ("Weight", "integer", ".status.canaryWeight", "Canary traffic percent"),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ),
        description="A registered model version rolled out to live traffic.",
    ),
    KindInfo(
        kind="DriftMonitor",
        plural="driftmonitors",
        short_names=("dm",),
        spec_model=driftmonitor.DriftMonitorSpec,
        status_model=driftmonitor.DriftMonitorStatus,
        columns=(
            ("Model", "string", ".spec.model", "Monitored model"),
            ("Mode", "string", ".spec.mode", "continuous or scheduled"),
            ("Live", "string", ".status.liveVersion", "The ModelVersion evaluated"),
            ("Phase", "string", ".status.phase", "Latest verdict"),
            ("Drifted", "boolean", ".status.drifted", "Dataset-level drift"),
            ("Samples", "integer", ".status.samples", "Rows of the last evaluation"),
            ("Age", "date", ".metadata.creationTimestamp", ""),
        ),
        description="Drift monitoring of a model's live traffic, with retraining on drift.",
    ),
)


def _merge(inner: dict[str, Any], outer: dict[str, Any]) -> dict[str, Any]:
    """``inner`` with the keys of ``outer`` (a field's own settings) on top; CEL rules of
    both are kept."""
    out = {**inner, **outer}
    rules = [*inner.get(_RULES, []), *outer.get(_RULES, [])]
    if rules:
        out[_RULES] = rules
    return out


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline refs, drop null branches and titles, recursively."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _structural(_merge(target, extra), defs)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            inner = _structural(branches[0], defs)
            if merged.get("default", 0) is None:
                merged.pop("default")
            merged.pop("type", None)
            return _structural(_merge(inner, merged), defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key == "$defs":
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        else:
            out[key] = _structural(value, defs)
    # JSON Schema 2020-12 says exclusiveMinimum: N; OpenAPI v3.0 says minimum: N + a flag.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(flag), int | float) and not isinstance(out.get(flag), bool):
            out[bound] = out.pop(flag)
            out[flag] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" in out:
        out.pop("additionalProperties")
    if "enum" in out and "type" not in out and all(isinstance(e, str) for e in out["enum"]):
        out["type"] = "string"
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and out.get("additionalProperties") is False:
        out.pop("additionalProperties")
    return out


def openapi_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of a model, with Kubernetes field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    result: dict[str, Any] = _structural(raw, defs)
    return result


def crd(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(info.spec_model)
    status_schema = openapi_schema(info.status_model)
    version_schema: dict[str, Any] = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    columns = [
        {"name": n, "type": t, "jsonPath": p, **({"description": d} if d else {})}
        for n, t, p, d in info.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{constants.GROUP}",
            # Static labels only: these files are also applied with kubectl, outside Helm.
            "labels": {
                "app.kubernetes.io/name": "toque",
                "app.kubernetes.io/version": toque.__version__,
                "app.kubernetes.io/component": "crd",
                "app.kubernetes.io/part-of": "toque",
            },
        },
        "spec": {
            "group": constants.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": list(info.short_names),
                "categories": [constants.CATEGORY],
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": version_schema},
                }
            ],
        },
    }


def render(info: KindInfo) -> str:
    """YAML text of one CRD file, with a do-not-edit header."""
    header = "# Generated by `make crds` from toque.api; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=100)


def write_all(out_dirs: list[pathlib.Path]) -> list[pathlib.Path]:
    """Write every CRD into each directory; returns the files written."""
    written = []
    for out in out_dirs:
        out.mkdir(parents=True, exist_ok=True)
        for info in KINDS:
            path = out / f"{constants.GROUP}_{info.plural}.yaml"
            path.write_text(render(info))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="+", type=pathlib.Path, help="output directories")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
