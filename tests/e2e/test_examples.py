"""Every file in examples/ applies cleanly with the real kubectl; names and columns work."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from toque.testing import cluster as local

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_applies(cluster: local.LocalCluster, namespace: str, path: pathlib.Path) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    for doc in yaml.safe_load_all(path.read_text()):
        stored = cluster.kubectl_json(
            "get", doc["kind"].lower(), doc["metadata"]["name"], "-n", namespace
        )
        assert stored["spec"]["model"]  # stored, with its spec, not pruned away


def test_short_names_and_category(cluster: local.LocalCluster, namespace: str) -> None:
    for path in EXAMPLES:
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    listing = cluster.kubectl("get", "toque", "-n", namespace).stdout
    for kind in ("trainingjob.toque.dev", "modelversion.toque.dev", "driftmonitor.toque.dev"):
        assert kind in listing
    for short in ("tj", "mv", "dm"):
        header = cluster.kubectl("get", short, "-n", namespace).stdout.splitlines()[0]
        assert "PHASE" in header
