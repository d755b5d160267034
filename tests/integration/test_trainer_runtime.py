"""The trainer runtime's own safety rules, run in-process without MinIO or MLflow servers.

- What ``toque train`` writes to the termination message (which becomes TrainingJob status)
  and logs never holds the credentials of a ``user:pass@`` tracking URI.
- The skops types trusted when a scikit-learn model is logged are the allow-listed
  scikit-learn ones found in it; a model holding any other type is refused, clearly.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from toque.api import trainingjob as tj
from toque.core import exitcodes
from toque.local import cluster as local
from toque.trainer import context, run, spec

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SECRET = "s3cret-pw"


def train_noop(ctx: context.TrainContext) -> None:
    return None


def train_leaky(ctx: context.TrainContext) -> None:
    raise RuntimeError(f"cannot reach http://bob:{SECRET}@feature-store:8080/v1")


@pytest.fixture
def trainer_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    closed = local.free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{closed}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("TOQUE_DEPENDENCY_TIMEOUT", "0.5")
    monkeypatch.setenv("TOQUE_RUN_SPEC", "{}")
    # Store settings, as in a training pod; with no datasets the store is never contacted.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-used")
    monkeypatch.setenv("TOQUE_S3_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("TOQUE_WORKDIR", str(tmp_path / "work"))
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("TOQUE_TERMINATION_MESSAGE_PATH", str(termination))
    return termination


def test_mlflow_down_termination_message_and_log_hide_credentials(
    trainer_env: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        code = run.main(f"{__name__}:train_noop")
    message = trainer_env.read_text()
    assert code == exitcodes.TRANSIENT, message
    assert message.startswith("DependencyUnavailable: reach MLflow")
    assert SECRET not in message and "alice" not in message
    assert "http://***@127.0.0.1" in message
    assert caplog.records and SECRET not in caplog.text


def test_user_code_failure_tail_is_redacted(
    trainer_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # MLflow reachable enough to start a run: its client calls answer from stubs here.
    import mlflow

    class Active:
        class info:  # noqa: N801 - mimics mlflow's attribute
            run_id = "r1"

    monkeypatch.setattr(
        mlflow, "set_experiment", lambda name: type("E", (), {"experiment_id": "1"})
    )
    monkeypatch.setattr(mlflow, "start_run", lambda **kwargs: Active)
    monkeypatch.setattr(mlflow, "end_run", lambda status: None)
    monkeypatch.setattr(mlflow, "MlflowClient", lambda: object())
    with caplog.at_level(logging.INFO):
        code = run.main(f"{__name__}:train_leaky")
    message = trainer_env.read_text()
    assert code == exitcodes.FAILED
    assert message.startswith("UserCodeFailed:") and "feature-store:8080" in message
    assert SECRET not in message and SECRET not in caplog.text


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A user's own transformer: skops cannot vouch for it, so neither may the trainer."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2


class LoggedError(Exception):
    """Raised by the stub of ``mlflow.sklearn.log_model`` with what it was given."""


def _log_model(model: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    import mlflow.sklearn

    def log_model(sk_model: Any, **kwargs: Any) -> None:
        raise LoggedError(kwargs)

    monkeypatch.setattr(mlflow.sklearn, "log_model", log_model)
    run_spec = spec.RunSpec(model=tj.ModelSpec(name="m", flavor="sklearn"))
    run._log_model(run_spec, context.Result(model=model), tmp_path)


def test_only_allow_listed_sklearn_types_are_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.arange(20) % 2)
    with pytest.raises(LoggedError) as logged:
        _log_model(forest, monkeypatch, tmp_path)
    assert logged.value.args[0]["skops_trusted_types"] == ["sklearn.tree._tree.Tree"]


def test_a_model_with_a_foreign_type_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x = np.arange(40.0).reshape(20, 2)
    model = make_pipeline(Doubler(), LogisticRegression()).fit(x, np.arange(20) % 2)
    with pytest.raises(run.PermanentError) as refused:
        _log_model(model, monkeypatch, tmp_path)
    text = str(refused.value)
    assert f"{__name__}.Doubler" in text and "allow-list" in text
