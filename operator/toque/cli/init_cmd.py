"""``toque init NAME``: a new training project from the template shipped inside Toque.

Renders ``toque.scaffold``'s copier template: the Cookiecutter Data Science layout, the
package with the training function, deploy/ (TrainingJob, ModelVersion, DriftMonitor), the
GitHub workflow, Makefile and tests. ``--update`` renders an existing project again with its
recorded answers (copier's recopy; see the help for why not a three-way merge). Progress goes
to stderr, the project's folder to stdout. Exit codes: 0 rendered, 3 (``PERMANENT``) bad name,
package or destination, or copier refused. Registered by ``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

from toque.core import exitcodes

PROG = "toque init"

_DESCRIPTION = """\
Render a training project from Toque's template (copier, no network): the Cookiecutter Data
Science layout (data/{raw,interim,processed,external}, models, notebooks, references,
reports/figures), a package with dataset.py, features.py, modeling/train.py (the training
function), modeling/predict.py and plots.py, deploy/ with a TrainingJob, a ModelVersion and a
DriftMonitor, .github/workflows/train.yml, pyproject.toml ([tool.toque]), Makefile, README and
tests. NAME names Kubernetes resources, so it must be a DNS-1123 label."""

_UPDATE_HELP = """\
render the project in --dest (default: here) again from this Toque's template with the answers
in its .copier-answers.yml, overwriting the template's files. This is copier's recopy, not
`copier update`: a three-way merge needs the template to be a git repository with version
tags, and the template inside the installed package is neither, so your edits to template
files are replaced. The project must be a git repository without uncommitted changes; `git
diff` then shows every change to keep or revert"""


def register(subs: Any) -> None:
    from toque import scaffold

    parser = subs.add_parser(
        "init",
        help="create a training project (Cookiecutter Data Science layout, deploy/, CI)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name",
        nargs="?",
        help="project name: a DNS-1123 label (lowercase letters, digits, '-'; at most 63), "
        "since it names the TrainingJob, the model and the datasets",
    )
    parser.add_argument("--dest", type=pathlib.Path, help="folder to render into (default: ./NAME)")
    parser.add_argument("--package", help="the Python package (default: NAME with '-' as '_')")
    parser.add_argument(
        "--data-from",
        choices=scaffold.DATA_SOURCES,
        help="what dataset.py writes: scikit-learn's bundled breast-cancer table (the "
        "default, no download) or nothing (you fill it in)",
    )
    parser.add_argument("--description", help="one line about the project")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="ask nothing: defaults for what the options do not give (implied when stdin "
        "is not a terminal)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="render into a folder that is not empty (the template's files overwrite "
        "files of the same name)",
    )
    parser.add_argument("--update", action="store_true", help=_UPDATE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-file lines")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return exitcodes.PERMANENT


def run(args: argparse.Namespace) -> int:
    from toque import scaffold

    try:
        if args.update:
            if args.name or args.package or args.data_from or args.description:
                return _fail(
                    "--update takes the answers recorded in .copier-answers.yml; give only --dest"
                )
            dest = scaffold.update(args.dest or pathlib.Path("."), quiet=args.quiet)
            print(f"{PROG}: updated {dest}; review with `git diff`", file=sys.stderr)
            print(dest)
            return exitcodes.OK
        if not args.name:
            return _fail("give the project's NAME (or --update in an existing project)")
        dest = args.dest or pathlib.Path(args.name)
        scaffold.render(
            dest,
            args.name,
            package=args.package,
            data_from=args.data_from,
            description=args.description,
            defaults=args.defaults or not sys.stdin.isatty(),
            force=args.force,
            quiet=args.quiet,
        )
    except scaffold.ScaffoldError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")
    print(
        f"{PROG}: created {dest}; next: cd {dest} && git init && make data train-local test "
        "(README.md has the rest)",
        file=sys.stderr,
    )
    print(dest)
    return exitcodes.OK
