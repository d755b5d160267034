"""Binary lookup: envtest's KUBEBUILDER_ASSETS first, then TOQUE_TOOLS_BIN."""

from __future__ import annotations

import pathlib

import pytest

from toque.local import cluster


def fake_bins(directory: pathlib.Path, names: tuple[str, ...]) -> None:
    directory.mkdir()
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_envtest_assets_win_and_toque_tools_fill_the_rest(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envtest, tools = tmp_path / "envtest", tmp_path / "tools"
    fake_bins(envtest, ("etcd", "kube-apiserver", "kubectl"))
    fake_bins(tools, cluster.BINARIES)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(envtest))
    monkeypatch.setenv("TOQUE_TOOLS_BIN", str(tools))
    found = cluster.find_binaries()
    assert found["etcd"] == envtest / "etcd"
    assert found["kubectl"] == envtest / "kubectl"
    assert found["kube-scheduler"] == tools / "kube-scheduler"
    assert set(found) == set(cluster.BINARIES)


def test_non_executable_files_are_ignored(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "tools"
    fake_bins(tools, cluster.BINARIES)
    (tools / "etcd").chmod(0o644)
    other = tmp_path / "other"
    fake_bins(other, ("etcd",))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("TOQUE_TOOLS_BIN", str(tools))
    monkeypatch.setattr(cluster, "REPO_ROOT", tmp_path / "no-repo")
    with pytest.raises(cluster.ClusterError, match="missing etcd"):
        cluster.find_binaries()
