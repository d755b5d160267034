"""What ``toque serve`` agrees to load, run in-process on local model directories.

- No expected digest: refused (exit 3) before anything is downloaded, unless
  ``--allow-unverified``.
- MLflow's unpickling permission is off at start and turned on only after the digest
  matched.
- A skops file holding a type off the allow-list is refused, even when the model's own
  ``MLmodel`` lists that type as trusted.
- A credentialed tracking URI never reaches the log.
- One worker serves with what loading left behind frozen out of the garbage collector.
"""

from __future__ import annotations

import gc
import logging
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from toque.core import digest, exitcodes
from toque.local import cluster as local
from toque.serving import model, server

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
PICKLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Not scikit-learn's: a skops file holding it must not be loaded."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2


def _save(model_object: Any, path: pathlib.Path, trusted: list[str]) -> str:
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        model_object, str(path), serialization_format="skops", skops_trusted_types=trusted
    )
    return digest.model_digest(path)


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    from sklearn.ensemble import RandomForestClassifier

    x = np.arange(40.0).reshape(20, 2)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.arange(20) % 2)
    path = tmp_path_factory.mktemp("forest") / "model"
    return path, _save(forest, path, ["sklearn.tree._tree.Tree"])


@pytest.fixture(scope="module")
def foreign_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, str]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x = np.arange(40.0).reshape(20, 2)
    pipeline = make_pipeline(Doubler(), LogisticRegression()).fit(x, np.arange(20) % 2)
    path = tmp_path_factory.mktemp("foreign") / "model"
    # The model vouches for its own type in MLmodel: the server must not believe it.
    return path, _save(pipeline, path, [f"{__name__}.Doubler"])


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Replaces the HTTP server: records the application instead of listening."""
    started: list[Any] = []
    monkeypatch.setattr(
        server.DrainingServer, "run", lambda self, sockets=None: started.append(self.application)
    )
    monkeypatch.delenv(PICKLE, raising=False)  # restored after the test
    yield started
    gc.unfreeze()  # serve() froze the test process's objects


def _options(path: pathlib.Path | str, **kwargs: Any) -> server.Options:
    return server.Options(
        model_uri=str(path),
        model_name="m",
        version="1",
        port=local.free_port(),
        dependency_timeout_s=0.5,
        **kwargs,
    )


def test_no_expected_digest_is_refused_before_download(
    forest_dir: tuple[pathlib.Path, str],
    served: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow.artifacts

    downloads: list[Any] = []

    def download(**kwargs: Any) -> str:
        downloads.append(kwargs)
        return str(forest_dir[0])

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)
    with caplog.at_level(logging.INFO, logger="toque.serve"):
        code = server.serve(_options(forest_dir[0]))
    assert code == exitcodes.PERMANENT and not served and not downloads
    assert "--allow-unverified" in caplog.text
    assert os.environ.get(PICKLE) == "false"


def test_allow_unverified_serves_it_with_a_warning(
    forest_dir: tuple[pathlib.Path, str], served: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="toque.serve"):
        code = server.serve(_options(forest_dir[0], allow_unverified=True))
    assert code == exitcodes.OK and len(served) == 1
    assert "without verifying" in caplog.text


def test_one_worker_serves_with_the_loaded_objects_frozen_out_of_the_collector(
    forest_dir: tuple[pathlib.Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen: list[int] = []
    monkeypatch.setattr(
        server.DrainingServer,
        "run",
        lambda self, sockets=None: frozen.append(gc.get_freeze_count()),
    )
    gc.unfreeze()
    try:
        code = server.serve(_options(forest_dir[0], expected_digest=forest_dir[1]))
    finally:
        gc.unfreeze()
    # A full collection would walk all of them: 100-200 ms on the event loop each time.
    assert code == exitcodes.OK and frozen and frozen[0] > 10_000


def test_unpickling_is_allowed_only_after_the_digest_matched(
    forest_dir: tuple[pathlib.Path, str], served: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PICKLE, "true")  # as if the image or pod set it: not trusted
    code = server.serve(_options(forest_dir[0], expected_digest="sha256:" + "0" * 64))
    assert code == exitcodes.PERMANENT and not served
    assert os.environ[PICKLE] == "false"
    code = server.serve(_options(forest_dir[0], expected_digest=forest_dir[1]))
    assert code == exitcodes.OK and len(served) == 1
    assert os.environ[PICKLE] == "true"


def test_a_skops_file_with_a_foreign_type_is_refused(
    foreign_dir: tuple[pathlib.Path, str], served: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="toque.serve"):
        code = server.serve(_options(foreign_dir[0], expected_digest=foreign_dir[1]))
    assert code == exitcodes.PERMANENT and not served
    assert f"{__name__}.Doubler" in caplog.text and "allow-list" in caplog.text


def test_the_log_never_shows_tracking_credentials(
    served: list[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closed = local.free_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:s3cret-pw@127.0.0.1:{closed}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.INFO):
        code = server.serve(_options("models:/m/1", expected_digest="sha256:" + "0" * 64))
    assert code == exitcodes.TRANSIENT and not served
    assert "127.0.0.1" in caplog.text and "s3cret-pw" not in caplog.text


def test_model_load_refuses_an_untrusted_fetch(forest_dir: tuple[pathlib.Path, str]) -> None:
    fetched = model.Fetched(forest_dir[0], forest_dir[1], None, {})
    with pytest.raises(model.ModelRejectedError):
        model.load(fetched)
