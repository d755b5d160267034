"""The registry client against a real MLflow 3 server (artifacts in MinIO).

Models are logged with the mlflow package, as the trainer logs them, then registered over
REST by ``toque.clients.mlflow_registry``; loading ``models:/<name>/<version>`` with mlflow
proves MLflow took the source we derived for each URI form.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from toque.clients import mlflow_registry
from toque.local import cluster as local
from toque.local import services

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
Y = np.array([0, 1, 1, 1] * 5)


@dataclasses.dataclass(frozen=True)
class Logged:
    run_id: str
    model_uri: str  # models:/m-<id>
    model_id: str
    artifact_location: str  # mlflow-artifacts:/<exp>/models/m-<id>/artifacts


@pytest.fixture(scope="module")
def logged(minio: services.Minio, mlflow_server: services.Mlflow) -> Iterator[Logged]:
    """One small scikit-learn model, logged once for the module's tests."""
    with warnings.catch_warnings():
        # mlflow.pyfunc warns at import about its own type hints; not ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        import mlflow
        import mlflow.pyfunc
        import mlflow.sklearn
    from sklearn import linear_model

    with pytest.MonkeyPatch.context() as patch:
        _mlflow_env(patch, minio, mlflow_server)
        mlflow.set_experiment(f"registry-{uuid.uuid4().hex[:8]}")
        with mlflow.start_run() as run:
            mlflow.set_tags({"toque.dataset": "iris@sha256:abc", "toque.code": "deadbeef"})
            model = linear_model.LogisticRegression().fit(X, Y)
            info = mlflow.sklearn.log_model(model, name="model")
        location = mlflow.get_logged_model(info.model_id).artifact_location
        yield Logged(run.info.run_id, info.model_uri, info.model_id, location)


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, minio: services.Minio, mlflow_server: services.Mlflow
) -> None:
    _mlflow_env(monkeypatch, minio, mlflow_server)


@pytest.fixture
def registry(mlflow_server: services.Mlflow) -> mlflow_registry.Registry:
    return mlflow_registry.Registry(mlflow_server.uri)


def _mlflow_env(patch: pytest.MonkeyPatch, minio: services.Minio, server: services.Mlflow) -> None:
    for key, value in minio.env().items():
        patch.setenv(key, value)
    patch.setenv("MLFLOW_TRACKING_URI", server.uri)


def _name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def _linked(model_id: str, name: str, version: str) -> bool:
    """Whether MLflow recorded the version on the logged model (the REST answer for a model
    version omits its model_id; the server tags the logged model when given one)."""
    import mlflow

    tag = mlflow.get_logged_model(model_id).tags.get("mlflow.modelVersions", "[]")
    return any((v["name"], str(v["version"])) == (name, version) for v in json.loads(tag))


def _predict(name: str, version: str) -> Any:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.predict(X[:4])


def test_register_is_idempotent_per_owner(
    registry: mlflow_registry.Registry, logged: Logged, env: None
) -> None:
    name = _name()
    tags = {"toque.dataset.train": "sha256:aaa", "toque.model_digest": "sha256:bbb"}
    first = registry.register(name, logged.model_uri, logged.run_id, tags, "uid-1")
    assert registry.register(name, logged.model_uri, logged.run_id, tags, "uid-1") == first
    second = registry.register(name, logged.model_uri, logged.run_id, tags, "uid-2")
    assert second != first
    assert [v["version"] for v in registry.versions(name)] == sorted([first, second], key=int)
    assert registry.version_tags(name, first) == {**tags, "toque.modelversion_uid": "uid-1"}

    # A re-register with changed lineage brings the tags up to date, not a new version.
    again = registry.register(name, logged.model_uri, logged.run_id, {"extra": "1"}, "uid-1")
    assert again == first and registry.version_tags(name, first)["extra"] == "1"

    version = registry.version(name, first)
    assert version["source"] == logged.model_uri
    assert _linked(logged.model_id, name, first)
    assert version["run_id"] == logged.run_id
    assert list(_predict(name, first)) == [0, 1, 1, 1]


def test_runs_uri_registers_the_logged_model(
    registry: mlflow_registry.Registry, logged: Logged, env: None
) -> None:
    name = _name()
    version = registry.register(name, f"runs:/{logged.run_id}/model", None, {}, "uid-runs")
    found = registry.version(name, version)
    assert found["source"] == f"models:/{logged.model_id}"
    assert found["run_id"] == logged.run_id and _linked(logged.model_id, name, version)
    assert list(_predict(name, version)) == [0, 1, 1, 1]


def test_artifact_uris_register(
    registry: mlflow_registry.Registry, logged: Logged, env: None
) -> None:
    name = _name()
    version = registry.register(name, logged.artifact_location, logged.run_id, {}, "uid-art")
    found = registry.version(name, version)
    assert found["source"] == logged.artifact_location
    assert _linked(logged.model_id, name, version)
    assert list(_predict(name, version)) == [0, 1, 1, 1]

    # The server stores mlflow-artifacts:/ under s3://mlflow/artifacts/; MLflow takes an S3
    # source as it is (the loader reads it with its own credentials).
    s3 = logged.artifact_location.replace("mlflow-artifacts:", "s3://mlflow/artifacts", 1)
    other = registry.register(name, s3, logged.run_id, {}, "uid-s3")
    assert list(_predict(name, other)) == [0, 1, 1, 1]


def test_aliases(registry: mlflow_registry.Registry, logged: Logged) -> None:
    name = _name()
    one = registry.register(name, logged.model_uri, logged.run_id, {}, "a")
    two = registry.register(name, logged.model_uri, logged.run_id, {}, "b")
    assert registry.alias_version(name, "champion") is None
    registry.set_alias(name, "champion", one)
    assert registry.alias_version(name, "champion") == one
    assert registry.champion(name, "champion").version == one
    registry.set_alias(name, "champion", two)
    assert registry.alias_version(name, "champion") == two
    registry.delete_alias(name, "champion")
    assert registry.alias_version(name, "champion") is None
    registry.delete_alias(name, "champion")  # absent: nothing to do
    registry.delete_alias(_name(), "champion")  # no such model either
    assert registry.alias_version(_name(), "champion") is None


def test_run_tags(registry: mlflow_registry.Registry, logged: Logged) -> None:
    tags = registry.run_tags(logged.run_id)
    assert tags["toque.dataset"] == "iris@sha256:abc" and tags["toque.code"] == "deadbeef"
    with pytest.raises(mlflow_registry.RegistryNotFoundError):
        registry.run_tags(uuid.uuid4().hex)
    with pytest.raises(mlflow_registry.RegistryNotFoundError):
        registry.version_tags(_name(), "1")


def test_bad_source_is_rejected(registry: mlflow_registry.Registry, logged: Logged) -> None:
    name = _name()
    with pytest.raises(mlflow_registry.RegistryRejectedError) as caught:
        registry.register(name, "file:///etc/passwd", logged.run_id, {}, "bad")
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Invalid model version source" in str(caught.value)
    # Outside the run's artifacts: MLflow refuses to point a version there.
    with pytest.raises(mlflow_registry.RegistryRejectedError):
        registry.register(name, "mlflow-artifacts:/0/elsewhere", logged.run_id, {}, "bad")
    assert registry.versions(name) == []


def test_unreachable_server_is_transient() -> None:
    registry = mlflow_registry.Registry(f"http://127.0.0.1:{local.free_port()}")
    with pytest.raises(mlflow_registry.RegistryUnavailableError):
        registry.register("m", "models:/m-1", None, {}, "uid")
    with pytest.raises(mlflow_registry.RegistryUnavailableError):
        registry.alias_version("m", "champion")
    with pytest.raises(mlflow_registry.RegistryUnavailableError):
        registry.champion("m", "champion")
