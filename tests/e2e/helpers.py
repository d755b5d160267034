"""Helpers for end-to-end tests: kubectl apply/get and polling with a clear failure."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import yaml

from toque.local import cluster as local


def apply(
    cluster: local.LocalCluster, namespace: str, doc: dict[str, Any] | str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=text, check=check)


def get(cluster: local.LocalCluster, namespace: str, *what: str) -> Any:
    result = cluster.kubectl("get", "-n", namespace, *what, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait(
    cluster: local.LocalCluster, predicate: Callable[[], Any], what: str, timeout: float = 60
) -> Any:
    return cluster.wait_for(predicate, timeout, what)


def events(cluster: local.LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl_json(
        "get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}"
    )
    items: list[dict[str, Any]] = out["items"]
    return items


def spec_managers(cluster: local.LocalCluster, namespace: str, kind: str, name: str) -> set[str]:
    """The field managers that own any field under ``spec`` of one object."""
    obj = cluster.kubectl_json("get", kind, name, "-n", namespace, "--show-managed-fields")
    return {
        entry["manager"]
        for entry in obj["metadata"].get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    }
