"""Shared fixtures: the pods' bridge, and real MinIO and MLflow servers listening on its
gateway address (so the real node's pods reach them), started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toque.local import cluster as local
from toque.local import node, services


@pytest.fixture(scope="session")
def network() -> Iterator[node.Network]:
    """The real node's bridge (10.251.0.0/24); the host's services listen on its gateway."""
    net = node.TEST_NETWORK
    node.sweep(net)  # what a killed earlier run left
    net.create()
    try:
        yield net
    finally:
        net.delete()


@pytest.fixture(scope="session")
def minio(
    tmp_path_factory: pytest.TempPathFactory, network: node.Network
) -> Iterator[services.Minio]:
    binary = local.find_binaries(("minio",))["minio"]
    server = services.Minio(
        workdir=tmp_path_factory.mktemp("minio"), binary=binary, host=network.gateway
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, minio: services.Minio
) -> Iterator[services.Mlflow]:
    server = services.Mlflow(workdir=tmp_path_factory.mktemp("mlflow"), minio=minio)
    server.start()
    try:
        yield server
    finally:
        server.stop()
