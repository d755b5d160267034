"""The project template of ``toque init`` and the copier calls that render it.

``template/`` is a copier template shipped inside the package (its files are package data),
so rendering needs no network and no git: ``render`` makes a new project, ``update`` renders
an existing one again with the answers it recorded in ``.copier-answers.yml``. Called by
``toque.cli.init_cmd`` and the tests. Copier comes with the ``cli`` extra and is imported
only when a project is rendered.

Why ``update`` is copier's *recopy* and not its *update*: ``copier update`` merges the
template's changes into the project three ways, which needs the template to be a git
repository with version tags (it re-renders the old version from its tag to diff against); a
template inside an installed wheel is a plain folder, and copier refuses ("Updating is only
supported in git-tracked templates"). So ``update`` overwrites the template's files with the
current template's, and asks for a git project with a clean tree so that ``git diff`` shows
every change for the user to keep or revert.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Final

from toque.workflow import project as projects

TEMPLATE: Final = pathlib.Path(__file__).resolve().parent / "template"
ANSWERS_FILE: Final = ".copier-answers.yml"
# Where dataset.py gets the raw data (the template's data_from choices; the first is the
# default).
DATA_SOURCES: Final = ("sklearn:breast_cancer", "none")


class ScaffoldError(Exception):
    """Rendering was refused or failed; the message is for the user."""


def check(name: str, package: str | None, data_from: str | None) -> str:
    """The package the project gets (``package`` or the one ``name`` suggests); ScaffoldError
    on a bad name, package or data source."""
    problem = projects.name_problem(name)
    if problem:
        raise ScaffoldError(problem)
    given = package
    package = package or projects.default_package(name)
    problem = projects.package_problem(package)
    if problem:
        hint = "" if given else f" (the package the name {name!r} suggests); give --package"
        raise ScaffoldError(problem + hint)
    if data_from is not None and data_from not in DATA_SOURCES:
        raise ScaffoldError(
            f"unknown data source {data_from!r}: choose one of {', '.join(DATA_SOURCES)}"
        )
    return package


def render(
    dest: pathlib.Path,
    name: str,
    *,
    package: str | None = None,
    data_from: str | None = None,
    description: str | None = None,
    defaults: bool = True,
    force: bool = False,
    quiet: bool = False,
) -> pathlib.Path:
    """Render a new project into ``dest``; returns it. ``defaults`` answers the questions not
    given here with their defaults instead of asking; ``force`` renders into a folder that is
    not empty, overwriting the template's files there."""
    package = check(name, package, data_from)
    if dest.exists() and not dest.is_dir():
        raise ScaffoldError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise ScaffoldError(
            f"{dest} is not empty; choose a new folder, or pass --force to render into it "
            "(the template's files overwrite files of the same name)"
        )
    data = {"project_name": name, "package": package}
    if data_from is not None:
        data["data_from"] = data_from
    if description is not None:
        data["description"] = description
    _copy(dest, data, defaults=defaults, overwrite=force, quiet=quiet)
    return dest


def update(dest: pathlib.Path, *, quiet: bool = False) -> pathlib.Path:
    """Render the project in ``dest`` again from the current template with its recorded
    answers, overwriting the template's files; needs a git project without uncommitted
    changes (see the module's docstring)."""
    if not (dest / ANSWERS_FILE).is_file():
        raise ScaffoldError(
            f"no {ANSWERS_FILE} in {dest}: not a project made by `toque init` (run it in the "
            "project's folder, or give it with --dest)"
        )
    status = subprocess.run(
        ["git", "-C", str(dest), "status", "--porcelain"], capture_output=True, check=False
    )
    if status.returncode != 0:
        raise ScaffoldError(
            f"{dest} is not a git repository: --update overwrites the template's files, and "
            "only git can show what it changed; `git init` and commit first"
        )
    if status.stdout.strip():
        raise ScaffoldError(
            f"{dest} has uncommitted changes: commit or stash them first, so that `git diff` "
            "shows exactly what --update changes"
        )
    _copy(dest, {}, defaults=True, overwrite=True, quiet=quiet)
    return dest


def _copy(
    dest: pathlib.Path, data: dict[str, str], *, defaults: bool, overwrite: bool, quiet: bool
) -> None:
    try:
        import copier
        from copier import errors
    except ImportError:
        raise ScaffoldError("toque init needs copier: pip install 'toque[cli]'") from None
    try:
        copier.run_copy(
            str(TEMPLATE),
            dest,
            data=data,
            defaults=defaults,
            overwrite=overwrite,
            quiet=quiet,
            # Not the user's copier settings file: the same answers give the same project.
            settings=copier.Settings(),
        )
    except errors.CopierError as error:
        raise ScaffoldError(str(error)) from None
