"""Shared fixtures: real MinIO and MLflow servers on loopback, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toque.local import cluster as local
from toque.local import services


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.Minio]:
    binary = local.find_binaries(("minio",))["minio"]
    server = services.Minio(workdir=tmp_path_factory.mktemp("minio"), binary=binary)
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
