"""``toque data`` failures that need no store: exit codes and one-line messages."""

from __future__ import annotations

import pathlib

import pytest

from toque.cli import main as cli
from toque.data import config, errors, fetch


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    # Nothing listens on port 9 (discard) here; these commands must fail before any request.
    monkeypatch.setenv("TOQUE_S3_ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.usefixtures("env")
def test_push_of_a_missing_path_exits_3_naming_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["data", "push", str(tmp_path / "nope"), "--name", "ds"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1 and str(tmp_path / "nope") in err


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    "argv",
    [
        ["data", "push", ".", "--name", "Bad Name"],
        ["data", "push", ".", "--name", "ds", "--tag", "sha256:x"],
        ["data", "show", "ds@sha256:123"],
    ],
)
def test_malformed_names_and_refs_exit_3(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 3
    assert "invalid" in capsys.readouterr().err


def test_missing_credentials_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert cli.main(["data", "ls"]) == 3
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err


def test_config_from_env_defaults_and_overrides() -> None:
    settings = config.StoreConfig.from_env({"AWS_ACCESS_KEY_ID": "k"})
    assert (settings.bucket, settings.region, settings.endpoint) == (
        "toque-data",
        "us-east-1",
        None,
    )
    settings = config.StoreConfig.from_env(
        {
            "TOQUE_DATA_BUCKET": "my-data",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "TOQUE_S3_ENDPOINT": "http://x",
        }
    )
    assert (settings.bucket, settings.region, settings.endpoint) == (
        "my-data",
        "eu-west-1",
        "http://x",
    )
    with pytest.raises(errors.InvalidInput):
        config.StoreConfig.from_env({"TOQUE_S3_MAX_ATTEMPTS": "many"})
    with pytest.raises(errors.InvalidInput, match="bucket"):
        config.StoreConfig.from_env({"TOQUE_DATA_BUCKET": "Bad_Bucket"})


@pytest.mark.parametrize("path", ["../evil", "/etc/passwd", "a/../../b", "a//b", "./a"])
def test_pull_refuses_manifest_paths_outside_dest(tmp_path: pathlib.Path, path: str) -> None:
    with pytest.raises(errors.CorruptedObject, match="unsafe path"):
        fetch.safe_target(tmp_path, path)


def test_pull_places_nested_paths_under_dest(tmp_path: pathlib.Path) -> None:
    assert fetch.safe_target(tmp_path, "a/b/c.csv") == tmp_path / "a" / "b" / "c.csv"
