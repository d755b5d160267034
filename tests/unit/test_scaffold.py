"""toque.scaffold and `toque init`: the template renders the Cookiecutter Data Science layout
with Toque's files, refuses bad input, and --update renders a project again from its answers.
(tests/integration/test_init_project.py runs the rendered project's own tests.)"""

from __future__ import annotations

import argparse
import pathlib
import py_compile
import subprocess

import pytest
import yaml

from toque import scaffold
from toque.cli import init_cmd
from toque.workflow import project as projects

ROOT = pathlib.Path(__file__).resolve().parents[2]
CCDS_FOLDERS = (
    "data/raw",
    "data/interim",
    "data/processed",
    "data/external",
    "models",
    "notebooks",
    "references",
    "reports/figures",
)


def _render(
    dest: pathlib.Path,
    name: str = "churn-model",
    *,
    package: str | None = None,
    data_from: str | None = None,
    force: bool = False,
) -> pathlib.Path:
    return scaffold.render(
        dest, name, package=package, data_from=data_from, force=force, quiet=True
    )


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _git(cwd: pathlib.Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _render(tmp_path_factory.mktemp("render") / "churn-model")


def test_render_makes_the_ccds_layout_with_kept_empty_folders(rendered: pathlib.Path) -> None:
    for folder in CCDS_FOLDERS:
        assert (rendered / folder / ".gitkeep").is_file(), folder
    package = rendered / "churn_model"
    for module in (
        "__init__.py",
        "config.py",
        "dataset.py",
        "features.py",
        "plots.py",
        "modeling/__init__.py",
        "modeling/train.py",
        "modeling/predict.py",
        "modeling/local.py",
    ):
        assert (package / module).is_file(), module
    for path in (
        "deploy/trainingjob.yaml",
        "deploy/modelversion.yaml",
        "deploy/driftmonitor.yaml",
        ".github/workflows/train.yml",
        "pyproject.toml",
        "Makefile",
        "README.md",
        "tests/test_train.py",
        ".gitignore",
    ):
        assert (rendered / path).is_file(), path


def test_rendered_files_hold_no_template_syntax_and_python_compiles(
    rendered: pathlib.Path,
) -> None:
    for relative, content in _files(rendered).items():
        text = content.decode()
        # GitHub's own expressions are ${{ ... }}; nothing else may keep braces of Jinja.
        assert "{%" not in text, relative
        assert "{{" not in text.replace("${{", ""), relative
        assert not relative.endswith(".jinja"), relative
        if relative.endswith(".py"):
            py_compile.compile(str(rendered / relative), doraise=True)


def test_the_rendered_workflow_is_the_example_workflow(rendered: pathlib.Path) -> None:
    example = (ROOT / "examples/github/train.yml").read_bytes()
    assert (rendered / ".github/workflows/train.yml").read_bytes() == example
    template = scaffold.TEMPLATE / "project/.github/workflows/train.yml"
    assert template.read_bytes() == example


def test_pyproject_declares_the_project_for_toque_submit(rendered: pathlib.Path) -> None:
    project = projects.load(rendered)
    assert (project.name, project.package, project.code) == (
        "churn-model",
        "churn_model",
        "churn-model-code",
    )
    assert project.datasets == (
        projects.Dataset("churn-model-data", pathlib.Path("data/raw"), "train"),
    )
    assert project.path(project.trainingjob).is_file()


def test_trainingjob_names_the_code_data_and_entrypoint_of_the_project(
    rendered: pathlib.Path,
) -> None:
    body = yaml.safe_load((rendered / "deploy/trainingjob.yaml").read_text())
    spec = body["spec"]
    assert body["metadata"]["name"] == "churn-model"
    assert spec["code"] == {"ref": "churn-model-code:latest"}
    assert spec["datasets"] == [{"ref": "churn-model-data:latest", "alias": "train"}]
    assert spec["entrypoint"] == "churn_model.modeling.train:train"
    assert spec["evaluation"]["thresholds"]
    assert spec["promote"]["rollout"]["steps"][0] == {"setWeight": 10}


def test_answers_file_records_the_answers_but_not_the_local_template_path(
    rendered: pathlib.Path,
) -> None:
    answers = yaml.safe_load((rendered / scaffold.ANSWERS_FILE).read_text())
    assert answers == {
        "project_name": "churn-model",
        "package": "churn_model",
        "data_from": "sklearn:breast_cancer",
        "description": "A model trained and served with Toque",
    }


def test_git_ignores_the_data_and_models_but_keeps_their_folders(
    rendered: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(rendered), str(repo)], check=True)
    _git(repo, "init", "-q")
    paths = [
        "data/raw/table.csv",
        "data/processed/x.parquet",
        "models/model.joblib",
        "data/raw/.gitkeep",
        "models/.gitkeep",
        "churn_model/dataset.py",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=repo, capture_output=True, text=True
    ).stdout.split()
    assert ignored == paths[:3]


def test_render_is_deterministic(tmp_path: pathlib.Path) -> None:
    assert _files(_render(tmp_path / "a")) == _files(_render(tmp_path / "b"))


def test_package_and_data_source_options_reach_the_files(tmp_path: pathlib.Path) -> None:
    dest = _render(tmp_path / "p", "fraud", package="scoring", data_from="none")
    assert (dest / "scoring/modeling/train.py").is_file()
    assert not (dest / "fraud").exists()
    spec = yaml.safe_load((dest / "deploy/trainingjob.yaml").read_text())["spec"]
    assert spec["entrypoint"] == "scoring.modeling.train:train"
    dataset = (dest / "scoring/dataset.py").read_text()
    assert "NotImplementedError" in dataset
    assert "load_breast_cancer" not in dataset


def test_the_default_data_source_is_the_bundled_breast_cancer_table(
    rendered: pathlib.Path,
) -> None:
    assert "datasets.load_breast_cancer" in (rendered / "churn_model/dataset.py").read_text()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("Churn_Model", {}, r"DNS-1123 label"),
        ("churn.model", {}, r"names Kubernetes resources"),
        ("churn", {"package": "churn-model"}, r"must be a Python identifier"),
        ("churn", {"package": "toque"}, r"would shadow"),
        ("2churn", {}, r"the name '2churn' suggests.*--package"),
        ("churn", {"data_from": "s3:bucket"}, r"unknown data source"),
    ],
)
def test_render_refuses_bad_input_before_writing(
    tmp_path: pathlib.Path, name: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(scaffold.ScaffoldError, match=message):
        _render(tmp_path / "out", name, **options)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_folder_that_is_not_empty(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(scaffold.ScaffoldError, match=r"not empty.*--force"):
        _render(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_render_refuses_a_file_as_destination(tmp_path: pathlib.Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(scaffold.ScaffoldError, match="not a folder"):
        _render(tmp_path / "x")


def test_force_renders_into_a_folder_keeping_other_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "README.md").write_text("old")
    _render(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "README.md").read_text().startswith("# churn-model")


def test_render_into_an_empty_existing_folder_needs_no_force(tmp_path: pathlib.Path) -> None:
    _render(tmp_path)
    assert (tmp_path / "deploy/trainingjob.yaml").is_file()


@pytest.fixture
def committed(tmp_path: pathlib.Path) -> pathlib.Path:
    dest = _render(tmp_path / "proj")
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-qm", "init")
    return dest


def test_update_restores_the_template_files_and_keeps_the_others(
    committed: pathlib.Path,
) -> None:
    before = _files(committed)
    (committed / "Makefile").write_text("edited\n")
    (committed / "README.md").unlink()
    (committed / "churn_model/extra.py").write_text("X = 1\n")
    _git(committed, "add", "-A")
    _git(committed, "commit", "-qm", "edits")
    scaffold.update(committed, quiet=True)
    after = _files(committed)
    assert after.pop("churn_model/extra.py") == b"X = 1\n"
    assert {k: v for k, v in after.items() if not k.startswith(".git/")} == {
        k: v for k, v in before.items() if not k.startswith(".git/")
    }


def test_update_refuses_uncommitted_changes(committed: pathlib.Path) -> None:
    (committed / "Makefile").write_text("edited\n")
    with pytest.raises(scaffold.ScaffoldError, match="uncommitted changes"):
        scaffold.update(committed, quiet=True)
    assert (committed / "Makefile").read_text() == "edited\n"


def test_update_refuses_a_project_outside_git(tmp_path: pathlib.Path) -> None:
    dest = _render(tmp_path / "proj")
    with pytest.raises(scaffold.ScaffoldError, match="not a git repository"):
        scaffold.update(dest, quiet=True)


def test_update_refuses_a_folder_without_answers(tmp_path: pathlib.Path) -> None:
    with pytest.raises(scaffold.ScaffoldError, match=r"no .copier-answers.yml"):
        scaffold.update(tmp_path, quiet=True)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="toque")
    init_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_renders_into_dest_and_prints_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "here"
    assert _cli(["init", "churn", "--dest", str(dest), "--defaults", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(dest)
    assert projects.load(dest).name == "churn"


def test_cli_defaults_the_destination_to_the_name(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _cli(["init", "churn", "--defaults", "-q", "--data-from", "none"]) == 0
    assert (tmp_path / "churn/churn/dataset.py").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["init", "Bad_Name", "--defaults"], "DNS-1123 label"),
        (["init", "ok", "--package", "not-valid", "--defaults"], "Python identifier"),
        (["init", "--defaults"], "give the project's NAME"),
        (["init", "ok", "--update"], "--update takes the answers recorded"),
    ],
)
def test_cli_refuses_bad_input_with_exit_code_3(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _cli(argv) == 3
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_non_empty_destination_unless_forced(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("x")
    argv = ["init", "churn", "--dest", str(tmp_path), "--defaults", "-q"]
    assert _cli(argv) == 3
    assert "--force" in capsys.readouterr().err
    assert _cli([*argv, "--force"]) == 0
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_cli_update_renders_the_project_again(
    committed: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (committed / "README.md").unlink()
    _git(committed, "commit", "-qam", "rm")
    assert _cli(["init", "--update", "--dest", str(committed), "-q"]) == 0
    assert (committed / "README.md").is_file()
    assert "git diff" in capsys.readouterr().err
