"""Bad resources are refused by the real API server at `kubectl apply`, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import apply, get
from toque.testing import cluster as local

TJ: dict[str, Any] = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "bad"},
    "spec": {"entrypoint": "pkg.train:main", "resources": {"cpu": "1", "memory": "1Gi"}},
}
MV: dict[str, Any] = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "ModelVersion",
    "metadata": {"name": "bad"},
    "spec": {
        "model": "m",
        "source": {"trainingJob": "t"},
        "rollout": {"steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}]},
    },
}
DM: dict[str, Any] = {
    "apiVersion": "toque.dev/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "bad"},
    "spec": {"model": "m", "reference": {"trainingData": True}},
}


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with dotted ``path`` set (value None deletes it)."""
    doc = copy.deepcopy(base)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


CASES = [
    (
        "missing entrypoint and command",
        with_(TJ, "spec.entrypoint", None),
        ["exactly one of entrypoint or command"],
    ),
    (
        "both entrypoint and command",
        with_(TJ, "spec.command", ["python", "t.py"]),
        ["exactly one of entrypoint or command"],
    ),
    ("missing required model", with_(MV, "spec.model", None), ["spec.model", "Required"]),
    ("missing required source", with_(MV, "spec.source", None), ["spec.source", "Required"]),
    ("unknown field", with_(TJ, "spec.learningRate", 0.1), ['unknown field "spec.learningRate"']),
    ("wrong type", with_(TJ, "spec.backoffLimit", "three"), ["spec.backoffLimit", "integer"]),
    (
        "negative cpu",
        with_(TJ, "spec.resources.cpu", "-1"),
        ["spec.resources.cpu", "greater than zero"],
    ),
    (
        "zero memory",
        with_(TJ, "spec.resources.memory", "0"),
        ["spec.resources.memory", "greater than zero"],
    ),
    (
        "zero integer cpu",
        with_(TJ, "spec.resources.cpu", 0),
        ["spec.resources.cpu", "greater than zero"],
    ),
    ("not a quantity", with_(TJ, "spec.resources.memory", "lots"), ["spec.resources.memory"]),
    ("negative gpu", with_(TJ, "spec.resources.gpu", -2), ["spec.resources.gpu"]),
    (
        "malformed dataset ref",
        with_(TJ, "spec.datasets", [{"ref": "Iris Data@sha256:123"}]),
        ["spec.datasets[0].ref"],
    ),
    (
        "short digest",
        with_(TJ, "spec.datasets", [{"ref": "iris@sha256:abc"}]),
        ["spec.datasets[0].ref"],
    ),
    ("malformed entrypoint", with_(TJ, "spec.entrypoint", "train.py"), ["spec.entrypoint"]),
    ("zero deadline", with_(TJ, "spec.activeDeadlineSeconds", 0), ["spec.activeDeadlineSeconds"]),
    ("negative backoff", with_(TJ, "spec.backoffLimit", -1), ["spec.backoffLimit"]),
    (
        "bad toleration effect",
        with_(TJ, "spec.tolerations", [{"key": "k", "operator": "Exists", "effect": "Sometimes"}]),
        ["spec.tolerations[0].effect"],
    ),
    (
        "gate disparity above 1",
        with_(
            TJ,
            "spec.evaluation",
            {"fairness": {"groupColumn": "sex", "metric": "recall", "maxDisparity": 2}},
        ),
        ["spec.evaluation.fairness.maxDisparity"],
    ),
    (
        "env value and valueFrom",
        with_(
            TJ,
            "spec.env",
            [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
        ["value and valueFrom are mutually exclusive"],
    ),
    (
        "weight above 100",
        with_(MV, "spec.rollout.steps.0", {"setWeight": 150}),
        ["spec.rollout.steps[0].setWeight"],
    ),
    (
        "step with weight and pause",
        with_(MV, "spec.rollout.steps.0", {"setWeight": 10, "pause": {}}),
        ["exactly one of setWeight or pause"],
    ),
    (
        "bad pause duration",
        with_(MV, "spec.rollout.steps.1", {"pause": {"duration": "5 minutes"}}),
        ["spec.rollout.steps[1].pause.duration"],
    ),
    (
        "two model sources",
        with_(MV, "spec.source", {"trainingJob": "t", "runId": "a" * 32}),
        ["exactly one of trainingJob, runId or modelUri"],
    ),
    (
        "drift share above 1",
        with_(DM, "spec.datasetRule", {"driftShare": 1.5}),
        ["spec.datasetRule.driftShare"],
    ),
    ("bad interval", with_(DM, "spec.interval", "often"), ["spec.interval"]),
    ("bad enum", with_(DM, "spec.mode", "sometimes"), ["spec.mode", "Unsupported value"]),
    (
        "scheduled without schedule",
        with_(DM, "spec.mode", "scheduled"),
        ["scheduled mode needs a schedule"],
    ),
    (
        "bad cron",
        with_(with_(DM, "spec.mode", "scheduled"), "spec.schedule", "every day"),
        ["spec.schedule"],
    ),
]


@pytest.mark.parametrize(("case", "doc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_field(
    cluster: local.LocalCluster,
    namespace: str,
    case: str,
    doc: dict[str, Any],
    expected: list[str],
) -> None:
    result = apply(cluster, namespace, doc, check=False)
    assert result.returncode != 0, f"{case}: accepted\n{result.stdout}"
    for text in expected:
        assert text in result.stderr, f"{case}: {text!r} not in:\n{result.stderr}"
    kind = doc["kind"].lower()
    assert get(cluster, namespace, kind, "bad") is None, "nothing may be stored"


def test_good_baselines_are_accepted(cluster: local.LocalCluster, namespace: str) -> None:
    """The bases of the cases above are valid, so each case fails for its own reason."""
    docs = "\n---\n".join(yaml.safe_dump(d) for d in (TJ, MV, DM))
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=docs, check=False
    )
    assert result.returncode == 0, result.stderr
