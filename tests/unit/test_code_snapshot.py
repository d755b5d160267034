"""``toque code push``'s snapshot: the committed files of a revision, nothing else, and the
revision it came from; the run spec carries the reference to the trainer."""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from toque.api import trainingjob as tj
from toque.cli import code_cmd
from toque.cli import main as cli
from toque.resources import pods
from toque.resources import trainingjob_job as jobs
from toque.trainer import spec as run_spec


def git(repo: pathlib.Path, *args: str) -> str:
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run(
        ["git", "-C", str(repo), *env_args, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "train.py").write_text("VALUE = 1\n")
    (root / "notes.txt").write_text("not code\n")
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_the_snapshot_holds_the_committed_files_and_names_the_commit(
    repo: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (repo / "pkg" / "train.py").write_text("VALUE = 2  # not committed\n")
    (repo / "untracked.py").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    commit = code_cmd.snapshot(repo, "HEAD", [], out)
    assert commit == git(repo, "rev-parse", "HEAD")
    assert (out / "pkg" / "train.py").read_text() == "VALUE = 1\n"
    assert not (out / "untracked.py").exists()
    assert (out / ".toque-revision").read_text() == f"git:{commit}\n"


def test_pathspecs_limit_the_snapshot(repo: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code_cmd.snapshot(repo, "HEAD", ["pkg"], out)
    assert (out / "pkg" / "train.py").exists() and not (out / "notes.txt").exists()


@pytest.mark.parametrize(("rev", "paths"), [("no-such-rev", []), ("HEAD", ["missing/"])])
def test_a_bad_revision_or_an_empty_selection_is_refused_clearly(
    repo: pathlib.Path, tmp_path: pathlib.Path, rev: str, paths: list[str]
) -> None:
    with pytest.raises(ValueError, match=r"not a commit|no tracked files|did not match"):
        code_cmd.snapshot(repo, rev, paths, tmp_path)


def test_outside_a_repository_push_fails_with_a_message(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["code", "push", "--name", "x", "-C", str(tmp_path)])
    assert code == 3 and "not a commit of a git repository" in capsys.readouterr().err


def test_the_code_reference_reaches_the_trainer_through_the_run_spec() -> None:
    spec = tj.TrainingJobSpec.model_validate(
        {"entrypoint": "pkg.train:fit", "code": {"ref": "project-code:latest"}}
    )
    job = jobs.build_job(jobs.Owner("t", "ns", "uid"), spec, pods.BuildConfig())
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    run, _ = run_spec.from_env({"TOQUE_RUN_SPEC": env["TOQUE_RUN_SPEC"]})
    assert run.code is not None and run.code.ref == "project-code:latest"
    assert json.loads(env["TOQUE_RUN_SPEC"])["code"] == {"ref": "project-code:latest"}
