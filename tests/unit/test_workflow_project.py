"""toque.workflow.project: the [tool.toque] table of a project, read and checked, and the
name and package checks of `toque init`."""

from __future__ import annotations

import pathlib

import pytest

from toque.workflow import project as projects

FULL = """
[project]
name = "churn"

[tool.toque]
name = "churn"
package = "churn_model"
code = "churn-src"
trainingjob = "k8s/train.yaml"
namespace = "ml"

[[tool.toque.datasets]]
name = "churn-data"
path = "data/raw"
alias = "train"

[[tool.toque.datasets]]
name = "churn-holdout"
path = "data/external/holdout.csv"
"""


def _write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def _table(body: str) -> str:
    return f"[tool.toque]\n{body}\n"


def test_load_reads_every_key_of_the_table(tmp_path: pathlib.Path) -> None:
    project = projects.load(_write(tmp_path, FULL))
    assert project == projects.Project(
        root=tmp_path.resolve(),
        name="churn",
        package="churn_model",
        code="churn-src",
        datasets=(
            projects.Dataset("churn-data", pathlib.Path("data/raw"), "train"),
            projects.Dataset("churn-holdout", pathlib.Path("data/external/holdout.csv"), None),
        ),
        trainingjob=pathlib.Path("k8s/train.yaml"),
        namespace="ml",
    )
    assert project.path(project.trainingjob) == tmp_path.resolve() / "k8s/train.yaml"


def test_load_fills_the_defaults_from_the_name(tmp_path: pathlib.Path) -> None:
    project = projects.load(_write(tmp_path, _table('name = "fraud-score"')))
    assert project.package == "fraud_score"
    assert project.code == "fraud-score-code"
    assert project.trainingjob == pathlib.Path("deploy/trainingjob.yaml")
    assert project.datasets == ()
    assert project.namespace is None


def test_load_takes_the_pyproject_file_as_well_as_its_folder(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, FULL)
    assert projects.load(tmp_path / "pyproject.toml") == projects.load(tmp_path)


def test_a_folder_without_pyproject_is_not_a_toque_project(tmp_path: pathlib.Path) -> None:
    with pytest.raises(projects.ProjectError, match=r"no pyproject.toml .*toque init"):
        projects.load(tmp_path)


def test_a_pyproject_without_the_table_is_not_a_toque_project(tmp_path: pathlib.Path) -> None:
    with pytest.raises(projects.ProjectError, match=r"no \[tool.toque\] table"):
        projects.load(_write(tmp_path, '[project]\nname = "x"\n'))


def test_invalid_toml_is_reported_with_the_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(projects.ProjectError, match=r"pyproject.toml is not valid TOML"):
        projects.load(_write(tmp_path, "[tool.toque\n"))


def test_project_error_is_a_value_error() -> None:
    # toque submit catches ValueError for every bad-input case.
    assert issubclass(projects.ProjectError, ValueError)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"\[tool.toque\] name: missing"),
        ('name = "Churn"', r"name: .*DNS-1123 label"),
        ('name = "churn_model"', r"name: .*DNS-1123 label"),
        (f'name = "{"a" * 64}"', r"name: .*at most 63"),
        ("name = 3", r"name: must be a string, not int"),
        ('name = "churn"\npackage = "churn-model"', r"package: .*Python identifier"),
        ('name = "churn"\npackage = "class"', r"package: .*not a keyword"),
        ('name = "churn"\npackage = "toque"', r"package: .*would shadow"),
        ('name = "churn"\npackage = "json"', r"package: .*would shadow"),
        ('name = "churn"\ncode = "Code!"', r"code: .*not a dataset name"),
        ('name = "churn"\ntrainingjob = "/etc/tj.yaml"', r"trainingjob: .*inside the project"),
        ('name = "churn"\ntrainingjob = "../tj.yaml"', r"trainingjob: .*inside the project"),
        ('name = "churn"\nnamespace = "ML"', r"namespace: .*DNS-1123 label"),
        ('name = "churn"\nimage = "x"', r"image: unknown key"),
        ('name = "churn"\ndatasets = "data/raw"', r"datasets: must be an array of tables"),
    ],
)
def test_load_refuses_a_bad_table_naming_the_key(
    tmp_path: pathlib.Path, body: str, message: str
) -> None:
    with pytest.raises(projects.ProjectError, match=message):
        projects.load(_write(tmp_path, _table(body)))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('path = "data/raw"', r"datasets\[0\].name: missing"),
        ('name = "Data"\npath = "data/raw"', r"datasets\[0\].name: .*not a dataset name"),
        ('name = "d"', r"datasets\[0\].path: missing"),
        ('name = "d"\npath = "../data"', r"datasets\[0\].path: .*inside the project"),
        ('name = "d"\npath = "."', r"datasets\[0\].path: .*inside the project"),
        ('name = "d"\npath = "data"\nalias = "my-train"', r"datasets\[0\].alias: .*identifier"),
        ('name = "d"\npath = "data"\ntag = "x"', r"datasets\[0\]: unknown key tag"),
    ],
)
def test_load_refuses_a_bad_dataset_naming_its_index(
    tmp_path: pathlib.Path, entry: str, message: str
) -> None:
    text = _table('name = "churn"') + f"[[tool.toque.datasets]]\n{entry}\n"
    with pytest.raises(projects.ProjectError, match=message):
        projects.load(_write(tmp_path, text))


def test_load_refuses_two_datasets_with_one_alias(tmp_path: pathlib.Path) -> None:
    text = _table('name = "churn"') + "".join(
        f'[[tool.toque.datasets]]\nname = "{n}"\npath = "data/{n}"\nalias = "train"\n'
        for n in ("a", "b")
    )
    with pytest.raises(projects.ProjectError, match=r"alias 'train' is used by more than one"):
        projects.load(_write(tmp_path, text))


@pytest.mark.parametrize("name", ["a", "churn", "churn-model-2", "0x", "a" * 63])
def test_dns_labels_are_project_names(name: str) -> None:
    assert projects.name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-churn", "churn-", "Churn", "churn_model", "a.b", "a" * 64])
def test_other_names_are_refused_as_not_dns_labels(name: str) -> None:
    problem = projects.name_problem(name)
    assert problem is not None
    assert "DNS-1123 label" in problem
    assert "names Kubernetes resources" in problem


@pytest.mark.parametrize("package", ["churn", "churn_model", "_private", "Model2"])
def test_identifiers_are_package_names(package: str) -> None:
    assert projects.package_problem(package) is None


@pytest.mark.parametrize("package", ["churn-model", "2churn", "", "for", "modèle", "os", "tests"])
def test_other_packages_are_refused(package: str) -> None:
    assert projects.package_problem(package) is not None


def test_the_default_package_of_a_name_is_an_identifier() -> None:
    assert projects.default_package("churn-model-2") == "churn_model_2"
    assert projects.package_problem(projects.default_package("churn-model-2")) is None
