"""Every object the Helm chart renders carries the app.kubernetes.io/* labels, and every
selector in it finds the operator's pods. The chart is rendered by the real helm (from the
tools' cache, hack/build-tools.sh) with default values, with every optional feature on, and in
namespaced mode; the CRDs under crds/ are checked on their own (Helm does not template them).
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from toque.local import cluster

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "toque"
RELEASE = "toque-labels"
LABELS = ("name", "instance", "version", "component", "part-of", "managed-by")
# What a file under crds/ can carry: Helm installs it as it is, so the release's name and the
# tool that manages it are unknown there (the same files are also applied with kubectl).
CRD_LABELS = ("name", "version", "component", "part-of")
# Workloads whose pod template is an object of its own once applied.
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def enabled_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every `enabled` flag in values.yaml: the chart's optional features."""
    keys = []
    for key, value in values.items():
        if key == "enabled" and isinstance(value, bool):
            keys.append(prefix + key)
        elif isinstance(value, dict):
            keys += enabled_keys(value, f"{prefix}{key}.")
    return keys


def all_features() -> list[str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    flags = ",".join(f"{key}=true" for key in enabled_keys(values))
    return ["--set", flags, "--set", "image.digest=sha256:" + "0" * 64]


RENDERS = {
    "defaults": [],
    "all-features": all_features(),
    "namespaced": [*all_features(), "--set", "operator.watchNamespaces={team-a,team-b}"],
}


@pytest.fixture(scope="module")
def helm() -> pathlib.Path:
    return cluster.find_binaries(("helm",))["helm"]


def render(helm: pathlib.Path, args: list[str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", "toque-system",
         "--kube-version", "1.34.0", *args],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def chart() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return loaded


def missing_labels(labels: dict[str, str] | None, keys: tuple[str, ...]) -> list[str]:
    labels = labels or {}
    return [f"app.kubernetes.io/{k}" for k in keys if not labels.get(f"app.kubernetes.io/{k}")]


def labelled_objects(doc: dict[str, Any]) -> list[tuple[str, dict[str, str] | None]]:
    """(what, labels) of the object and of its pod template, if it has one."""
    what = f"{doc['kind']}/{doc['metadata']['name']}"
    found = [(what, doc["metadata"].get("labels"))]
    if doc["kind"] in POD_OWNERS:
        found.append((f"{what} pod template", doc["spec"]["template"]["metadata"].get("labels")))
    return found


@pytest.mark.parametrize("render_name", sorted(RENDERS))
def test_every_rendered_object_and_pod_template_has_the_recommended_labels(
    helm: pathlib.Path, render_name: str
) -> None:
    docs = render(helm, RENDERS[render_name])
    app_version = str(chart()["appVersion"])
    problems = []
    for doc in docs:
        for what, labels in labelled_objects(doc):
            if missing := missing_labels(labels, LABELS):
                problems.append(f"{what}: no {', '.join(missing)}")
                continue
            assert labels is not None
            expected = {
                "app.kubernetes.io/name": "toque",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/version": app_version,
                "app.kubernetes.io/part-of": "toque",
                "app.kubernetes.io/managed-by": "Helm",
            }
            wrong = {k: labels[k] for k, v in expected.items() if labels[k] != v}
            if wrong:
                problems.append(f"{what}: {wrong}")
    assert problems == []


def test_all_features_render_includes_every_optional_object(helm: pathlib.Path) -> None:
    kinds = {doc["kind"] for doc in render(helm, RENDERS["all-features"])}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("path", sorted((CHART / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_every_crd_of_the_chart_has_the_static_recommended_labels(path: pathlib.Path) -> None:
    crd = yaml.safe_load(path.read_text())
    labels = crd["metadata"].get("labels")
    assert missing_labels(labels, CRD_LABELS) == []
    assert labels["app.kubernetes.io/name"] == "toque"
    assert labels["app.kubernetes.io/part-of"] == "toque"
    assert labels["app.kubernetes.io/version"] == str(chart()["appVersion"])


def selectors(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(what, target, selector) of the chart's own selectors: `pod` ones must find the
    operator's pods, `service` ones (a ServiceMonitor's) its metrics Service."""
    what = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    found = {
        "Deployment": lambda: [("pod", spec["selector"]["matchLabels"])],
        "Service": lambda: [("pod", spec["selector"])],
        "NetworkPolicy": lambda: [("pod", spec["podSelector"]["matchLabels"])],
        "ServiceMonitor": lambda: [("service", spec["selector"]["matchLabels"])],
    }.get(doc["kind"], list)()
    return [(what, target, selector) for target, selector in found]


@pytest.mark.parametrize("render_name", sorted(RENDERS))
def test_every_selector_of_the_operator_matches_its_pods_or_service(
    helm: pathlib.Path, render_name: str
) -> None:
    docs = render(helm, RENDERS[render_name])
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    targets = {
        "pod": deployment["spec"]["template"]["metadata"]["labels"],
        "service": service["metadata"]["labels"],
    }
    misses = [
        what
        for doc in docs
        for what, target, selector in selectors(doc)
        if not selector.items() <= targets[target].items()
    ]
    assert misses == []
