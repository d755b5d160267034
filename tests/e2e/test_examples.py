"""Every file in examples/ applies cleanly with the real kubectl; names and columns work."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from toque.local import cluster as local

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


def test_short_names_category_and_printer_columns_from_spec(
    cluster: local.LocalCluster, namespace: str
) -> None:
    """Short names and the `toque` category list all three kinds; the printer columns that
    come from the spec show the spec's values (status columns may be empty here: this test
    does not wait for the operator)."""
    for path in EXAMPLES:
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    listing = cluster.kubectl("get", "toque", "-n", namespace).stdout
    for kind in ("trainingjob.toque.dev", "modelversion.toque.dev", "driftmonitor.toque.dev"):
        assert kind in listing
    docs = [d for p in EXAMPLES for d in yaml.safe_load_all(p.read_text())]
    for short, kind in (("tj", "TrainingJob"), ("mv", "ModelVersion"), ("dm", "DriftMonitor")):
        lines = cluster.kubectl("get", short, "-n", namespace).stdout.splitlines()
        assert "PHASE" in lines[0].split()
        if kind == "TrainingJob":
            continue
        column = lines[0].split().index("MODEL")
        for doc in (d for d in docs if d["kind"] == kind):
            row = next(
                line.split() for line in lines[1:] if line.split()[0] == doc["metadata"]["name"]
            )
            assert row[column] == doc["spec"]["model"]
