"""What a project made by ``toque init`` declares: the ``[tool.toque]`` table of its
``pyproject.toml``.

``load`` reads and checks it (``ProjectError``, a ValueError, names the key and what is wrong);
``name_problem`` and ``package_problem`` are the checks ``toque init`` applies to a new
project's name and package before rendering. Called by ``toque.cli.init_cmd``,
``toque.scaffold``, ``toque submit`` and the scaffolded project's local runner.

    [tool.toque]
    name = "churn"                    # names the TrainingJob, the model and the datasets
    package = "churn"                 # the Python package with modeling/train.py
    code = "churn-code"               # code snapshot name (default <name>-code)
    trainingjob = "deploy/trainingjob.yaml"
    namespace = "ml"                  # optional; default: the kubeconfig context's

    [[tool.toque.datasets]]
    name = "churn-data"               # pushed with `toque data push PATH --name NAME`
    path = "data/raw"
    alias = "train"                   # what the training function reads it as
"""

from __future__ import annotations

import dataclasses
import keyword
import pathlib
import re
import sys
import tomllib
from collections.abc import Callable
from typing import Any

PYPROJECT = "pyproject.toml"
DEFAULT_TRAININGJOB = "deploy/trainingjob.yaml"
MAX_NAME = 63
# The Kubernetes DNS-1123 label and Toque's dataset name (as toque.api.schema spells them;
# kept here so reading a project does not load pydantic).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DATASET_NAME = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Packages a project's own package would shadow on sys.path (the trainer puts the code
# snapshot first): Toque itself and the test folder every project has.
_RESERVED_PACKAGES = frozenset({"toque", "tests"})


class ProjectError(ValueError):
    """The project's declaration is missing or wrong; the message says where and how."""


# Builds the error for a key of the table: fail(key, message).
_Fail = Callable[[str, str], ProjectError]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A local folder versioned as a Toque dataset."""

    name: str
    path: pathlib.Path  # relative to the project's root
    alias: str | None = None  # None: the training function reads it under ``name``


@dataclasses.dataclass(frozen=True)
class Project:
    """A scaffolded project; paths are relative to ``root``."""

    root: pathlib.Path
    name: str
    package: str
    code: str
    datasets: tuple[Dataset, ...] = ()
    trainingjob: pathlib.Path = pathlib.Path(DEFAULT_TRAININGJOB)
    namespace: str | None = None

    def path(self, relative: pathlib.Path | str) -> pathlib.Path:
        """``relative`` (as declared) under the project's root."""
        return self.root / relative


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a project, or None. It names Kubernetes resources (the
    TrainingJob, the model, the DriftMonitor), so it must be a DNS-1123 label."""
    if len(name) > MAX_NAME or not _DNS_LABEL.fullmatch(name):
        return (
            f"invalid project name {name!r}: it names Kubernetes resources, so it must be a "
            f"DNS-1123 label: at most {MAX_NAME} lowercase letters, digits and '-', starting "
            "and ending with a letter or digit (e.g. 'churn-model')"
        )
    return None


def package_problem(package: str) -> str | None:
    """Why ``package`` cannot be the project's Python package, or None."""
    if not package.isidentifier() or not package.isascii() or keyword.iskeyword(package):
        return (
            f"invalid package name {package!r}: it must be a Python identifier (ASCII letters, "
            "digits and '_', not starting with a digit, not a keyword), e.g. 'churn_model'"
        )
    if package in _RESERVED_PACKAGES or package in sys.stdlib_module_names:
        return (
            f"invalid package name {package!r}: it would shadow the module of the same name "
            "(Toque's, the project's tests or Python's standard library); choose another"
        )
    return None


def default_package(name: str) -> str:
    """The package a project name suggests: ``churn-model`` -> ``churn_model``."""
    return name.replace("-", "_")


def load(path: pathlib.Path | str) -> Project:
    """The project whose ``pyproject.toml`` is ``path`` or lies in the folder ``path``."""
    path = pathlib.Path(path)
    file = path / PYPROJECT if path.is_dir() else path
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ProjectError(
            f"no {PYPROJECT} in {file.parent}: not a Toque project (create one with `toque init`)"
        ) from None
    except OSError as error:
        raise ProjectError(f"cannot read {file}: {error.strerror or error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProjectError(f"{file} is not valid TOML: {error}") from None
    table = data.get("tool", {}).get("toque")
    if table is None:
        raise ProjectError(
            f"{file} has no [tool.toque] table: not a Toque project (create one with "
            "`toque init`, or add the table: name, package, datasets)"
        )
    if not isinstance(table, dict):
        raise ProjectError(f"{file}: [tool.toque] must be a table")
    return parse(table, file.parent.resolve(), str(file))


def parse(table: dict[str, Any], root: pathlib.Path, where: str = PYPROJECT) -> Project:
    """A ``[tool.toque]`` table, checked; ``where`` names it in errors."""

    def fail(key: str, message: str) -> ProjectError:
        return ProjectError(f"{where}: [tool.toque] {key}: {message}")

    known = {"name", "package", "code", "datasets", "trainingjob", "namespace"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise fail(", ".join(unknown), f"unknown key; the table takes {', '.join(sorted(known))}")
    name = _string(table, "name", fail, required=True)
    problem = name_problem(name)
    if problem:
        raise fail("name", problem)
    package = _string(table, "package", fail) or default_package(name)
    problem = package_problem(package)
    if problem:
        raise fail("package", problem)
    code = _string(table, "code", fail) or f"{name}-code"
    if not _DATASET_NAME.fullmatch(code):
        raise fail("code", f"{code!r} is not a dataset name (lowercase letters, digits, '-_.')")
    trainingjob = _string(table, "trainingjob", fail) or DEFAULT_TRAININGJOB
    problem = _outside(trainingjob)
    if problem:
        raise fail("trainingjob", problem)
    namespace = _string(table, "namespace", fail) or None
    if namespace is not None and (len(namespace) > MAX_NAME or not _DNS_LABEL.fullmatch(namespace)):
        raise fail("namespace", f"{namespace!r} is not a Kubernetes namespace (a DNS-1123 label)")
    datasets = _datasets(table.get("datasets", []), fail)
    return Project(root, name, package, code, datasets, pathlib.Path(trainingjob), namespace)


def _string(table: dict[str, Any], key: str, fail: _Fail, *, required: bool = False) -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise fail(key, "missing")
        return ""
    if not isinstance(value, str):
        raise fail(key, f"must be a string, not {type(value).__name__}")
    return value


def _outside(text: str) -> str | None:
    """Why ``text`` is not a path inside the project (relative, without '..'), or None."""
    path = pathlib.PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or text.strip() in ("", "."):
        return f"{text!r} must be a path inside the project (relative, without '..')"
    return None


def _datasets(entries: Any, fail: _Fail) -> tuple[Dataset, ...]:
    if not isinstance(entries, list):
        raise fail("datasets", "must be an array of tables ([[tool.toque.datasets]])")
    out: list[Dataset] = []
    for i, entry in enumerate(entries):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, "must be a table with name, path and alias")
        unknown = sorted(set(entry) - {"name", "path", "alias"})
        if unknown:
            raise fail(where, f"unknown key {', '.join(unknown)}; it takes name, path, alias")

        def field_fail(key: str, message: str, where: str = where) -> ProjectError:
            return fail(f"{where}.{key}", message)

        name = _string(entry, "name", field_fail, required=True)
        if not _DATASET_NAME.fullmatch(name):
            raise field_fail(
                "name", f"{name!r} is not a dataset name (lowercase letters, digits, '-_.')"
            )
        path = _string(entry, "path", field_fail, required=True)
        problem = _outside(path)
        if problem:
            raise field_fail("path", problem)
        alias = _string(entry, "alias", field_fail) or None
        if alias is not None and (len(alias) > MAX_NAME or not _ALIAS.fullmatch(alias)):
            raise field_fail("alias", f"{alias!r} is not an alias (a Python identifier)")
        out.append(Dataset(name, pathlib.Path(path), alias))
    for key in ("name", "alias"):
        values = [getattr(d, key) for d in out if getattr(d, key) is not None]
        for value in values:
            if values.count(value) > 1:
                raise fail("datasets", f"{key} {value!r} is used by more than one dataset")
    return tuple(out)
