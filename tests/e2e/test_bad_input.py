"""Bad resources are refused by the real API server at `kubectl apply`, naming the field;
good ones, however unusual, are accepted.

The corpus in ``tests/corpus`` (see ``tests/unit/test_schema_corpus.py``, which holds the
pydantic side) is applied with ``kubectl apply --dry-run=server``: every invalid resource must
be refused with the faulty field in the message, every valid one accepted. Installing the
CRDs at all (the session fixture) proves that their CEL rules fit the API server's cost
budget.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import json
import pathlib
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
import yaml

from tests.e2e.helpers import apply, get
from tests.unit.test_schema_corpus import SPECS, corpus, load
from toque.local import cluster as local

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace(cluster: local.LocalCluster) -> Iterator[str]:
    """A plain namespace: judging input needs no MinIO (the conftest one starts it)."""
    name = f"bad-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


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
        ["spec.resources.cpu", 'Invalid value: "-1"'],
    ),
    (
        "zero memory",
        with_(TJ, "spec.resources.memory", "0"),
        ["spec.resources.memory", 'Invalid value: "0"'],
    ),
    (
        "zero integer cpu",
        with_(TJ, "spec.resources.cpu", 0),
        ["spec.resources.cpu", "greater than 0"],
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


# -- the corpus ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    name: str
    expect: str  # valid | invalid
    accepted: bool
    names_field: bool  # the refusal names the faulty field (and says what it should)
    output: str

    @property
    def right(self) -> bool:
        return self.accepted if self.expect == "valid" else not self.accepted and self.names_field


def judge(dry_run: Callable[[str], tuple[int, str]], path: pathlib.Path) -> Verdict:
    """Apply one corpus file with a server-side dry run and compare with its annotations."""
    _, notes = load(path)
    code, output = dry_run(path.read_text())
    wanted = [notes.get("field", ""), notes.get("says", "")]
    return Verdict(
        name=path.stem,
        expect=notes["expect"],
        accepted=code == 0,
        names_field=code != 0 and all(w in output for w in wanted),
        output=output.strip(),
    )


def judge_all(dry_run: Callable[[str], tuple[int, str]]) -> list[Verdict]:
    paths = corpus("valid") + corpus("invalid")
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda p: judge(dry_run, p), paths))


def summary(verdicts: list[Verdict]) -> str:
    valid = [v for v in verdicts if v.expect == "valid"]
    invalid = [v for v in verdicts if v.expect == "invalid"]
    refused = [v for v in invalid if not v.accepted]
    named = [v for v in refused if v.names_field]
    accepted = [v for v in valid if v.accepted]

    def rate(part: list[Verdict], whole: list[Verdict]) -> str:
        return f"{len(part)}/{len(whole)} ({100 * len(part) / max(len(whole), 1):.1f} %)"

    return (
        f"invalid refused: {rate(refused, invalid)}; refused naming the field: "
        f"{rate(named, invalid)}; valid accepted: {rate(accepted, valid)}"
    )


def kubectl_dry_run(
    cluster: local.LocalCluster, namespace: str
) -> Callable[[str], tuple[int, str]]:
    def run(text: str) -> tuple[int, str]:
        result = cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=text, check=False
        )
        return result.returncode, result.stdout + result.stderr

    return run


def test_corpus_is_judged_right_by_the_api_server(
    cluster: local.LocalCluster, namespace: str
) -> None:
    verdicts = judge_all(kubectl_dry_run(cluster, namespace))
    print(f"\ncorpus against the API server: {summary(verdicts)}")
    wrong = [v for v in verdicts if not v.right]
    report = "\n".join(f"- {v.name} (expected {v.expect}):\n    {v.output}" for v in wrong)
    assert not wrong, f"{summary(verdicts)}\n{report}"


# Values careless users write, dropped into random places of the valid corpus.
TRICKY: list[Any] = [
    0, 1, -1, 0.5, 1.5, 100, 1e-9, True, False, "", "a", "A b", "-x", "x" * 64, "0", "1", "0s",
    "5m", "1Gi", "500m", "latest", "v1", "In", "Exists", "Gt", "NoExecute", "metadata.name",
    "a/b", "Example.com/x", "ks", "jsd", "@daily", "60 * * * *", "result < 1", "s3://b/../x",
    "sha256:" + "a" * 64, [], {}, ["a"], {"a": "b"}, None,
]  # fmt: skip


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    if path:
        yield path


def mutations(count: int, seed: int) -> list[dict[str, Any]]:
    """Valid corpus resources with one spec field (or subtree) replaced or removed."""
    rng = random.Random(seed)
    docs = [load(p)[0] for p in corpus("valid")]
    out = []
    for i in range(count):
        doc = copy.deepcopy(rng.choice(docs))
        doc["metadata"] = {"name": f"mutant-{i}"}
        path = rng.choice(list(_leaves(doc["spec"])))
        node = doc["spec"]
        for key in path[:-1]:
            node = node[key]
        value = copy.deepcopy(rng.choice(TRICKY))
        if value is None and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value
        out.append(doc)
    return out


def pydantic_accepts(doc: dict[str, Any]) -> bool:
    try:
        SPECS[doc["kind"]].model_validate(doc["spec"], by_name=False)
    except pydantic.ValidationError:
        return False
    return True


def test_pydantic_and_the_api_server_agree_on_mutated_resources(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """The operator validates with pydantic: it must never refuse what the API server
    admitted, and should refuse what the API server refuses."""
    dry_run = kubectl_dry_run(cluster, namespace)
    docs = mutations(300, seed=14)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda d: dry_run(json.dumps(d)), docs))
    differ = [
        f"{d['kind']} {json.dumps(d['spec'])[:300]}: API server {'admits' if code == 0 else out}"
        for d, (code, out) in zip(docs, verdicts, strict=True)
        if (code == 0) != pydantic_accepts(d)
    ]
    admitted = sum(code == 0 for code, _ in verdicts)
    print(f"\nmutations: {admitted} admitted, {len(docs) - admitted} refused, {len(differ)} differ")
    assert not differ, "\n".join(differ)


# -- immutability ----------------------------------------------------------------------------

DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_model_and_source_of_a_model_version_are_immutable(
    cluster: local.LocalCluster, namespace: str
) -> None:
    doc = copy.deepcopy(MV)
    doc["metadata"]["name"] = "registered"
    apply(cluster, namespace, doc)

    def patch(spec: dict[str, Any]) -> tuple[int, str]:
        result = cluster.kubectl(
            "patch", "modelversion", "registered", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": spec}), check=False,
        )  # fmt: skip
        return result.returncode, result.stderr

    refused: dict[str, tuple[dict[str, Any], str, str]] = {
        "another model": ({"model": "other"}, "spec.model", "model is immutable"),
        "another job": ({"source": {"trainingJob": "u"}}, "spec.source", "source is immutable"),
        "a digest added": ({"source": {"modelDigest": DIGEST}}, "spec.source", "immutable"),
        "another kind of source": (
            {"source": {"trainingJob": None, "modelUri": "s3://b/m/1", "modelDigest": DIGEST}},
            "spec.source",
            "source is immutable",
        ),
    }
    for case, (spec, field, message) in refused.items():
        code, stderr = patch(spec)
        assert code != 0, f"{case}: accepted"
        assert field in stderr and message in stderr, f"{case}: {stderr}"
    stored = get(cluster, namespace, "modelversion", "registered")
    assert stored["spec"]["model"] == "m" and stored["spec"]["source"]["trainingJob"] == "t"
    # The rest of the spec stays editable, and re-applying the same spec is no change.
    assert patch({"serving": {"replicas": 2}})[0] == 0
    assert patch({"model": "m", "source": {"trainingJob": "t"}})[0] == 0


def test_crds_fit_the_api_servers_cel_cost_budget(cluster: local.LocalCluster) -> None:
    """The fixture installed them; a dry run of both copies says so explicitly."""
    for directory in ("crds", "helm/toque/crds"):
        result = cluster.kubectl(
            "apply", "--server-side", "--dry-run=server", "-f", str(ROOT / directory), check=False
        )
        assert result.returncode == 0, result.stderr
