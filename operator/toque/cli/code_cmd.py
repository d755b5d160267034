"""``toque code push``: a project's git-tracked files at a revision, stored like a dataset.

A TrainingJob's ``spec.code.ref`` names the snapshot; the trainer fetches it, verifies every
file's SHA-256 and puts it first on ``sys.path``, so a data scientist can train a change
without building an image. The snapshot holds the committed files of the revision only
(``git archive``), plus ``.toque-revision`` naming it, which becomes the run's
``codeRevision`` and its MLflow tag.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from toque.core import exitcodes
from toque.trainer.lineage import REVISION_FILE

if TYPE_CHECKING:
    from toque.data import store


def register(subs: Any) -> None:
    parser = subs.add_parser("code", help="code snapshots for TrainingJobs (spec.code.ref)")
    commands = parser.add_subparsers(dest="code_command", required=True)
    push = commands.add_parser(
        "push", help="store the git-tracked files at a revision; prints NAME@sha256:…"
    )
    push.add_argument("paths", nargs="*", help="pathspecs to include (default: the whole tree)")
    push.add_argument("--name", required=True, help="snapshot name, as for a dataset")
    push.add_argument("--rev", default="HEAD", help="git revision (default: HEAD)")
    push.add_argument("-C", dest="repo", type=pathlib.Path, default=pathlib.Path("."))
    push.add_argument("--tag", action="append", default=[], help="also move this tag")
    push.set_defaults(func=_push)


def _git(repo: pathlib.Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)


def _fail(message: str) -> int:
    print(f"toque code push: {message}", file=sys.stderr)
    return exitcodes.PERMANENT


def snapshot(repo: pathlib.Path, rev: str, paths: list[str], dest: pathlib.Path) -> str:
    """Extract the tracked files of ``rev`` (limited to ``paths``) into ``dest``; returns the
    commit. Raises ValueError with a message for the user."""
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise ValueError(f"{rev!r} is not a commit of a git repository at {repo}")
    commit = found.stdout.decode().strip()
    archive = _git(repo, "archive", "--format=tar", commit, "--", *paths)
    if archive.returncode != 0:
        raise ValueError(archive.stderr.decode().strip() or "git archive failed")
    with tempfile.TemporaryFile() as tar_file:
        tar_file.write(archive.stdout)
        tar_file.seek(0)
        with tarfile.open(fileobj=tar_file) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            if not any(m.isfile() for m in members):
                raise ValueError(f"no tracked files match {paths or ['.']} at {rev}")
            tar.extractall(dest, members=members, filter="data")
    (dest / REVISION_FILE).write_text(f"git:{commit}\n")
    return commit


@dataclasses.dataclass(frozen=True)
class Pushed:
    """A stored snapshot: ``result.ref`` is pinned; ``dirty`` says uncommitted changes to
    tracked files were left out of it."""

    commit: str
    result: store.PushResult
    dirty: bool


def push(
    repo: pathlib.Path,
    name: str,
    rev: str = "HEAD",
    paths: Sequence[str] = (),
    tags: Sequence[str] = ("latest",),
) -> Pushed:
    """Snapshot ``rev`` of ``repo`` and store it as ``name``, moving ``tags`` (default:
    ``latest``; ``toque submit`` moves none unless asked).

    ValueError for a bad repository or revision; ``toque.data.errors.DataError`` from the
    store. Also called by ``toque submit``.
    """
    from toque.data import store

    with tempfile.TemporaryDirectory(prefix="toque-code-") as tmp:
        root = pathlib.Path(tmp)
        commit = snapshot(repo, rev, list(paths), root)
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *paths)
        result = store.DataStore.from_env().push(root, name, list(tags))
    return Pushed(commit, result, rev == "HEAD" and bool(dirty.stdout.strip()))


def _push(args: argparse.Namespace) -> int:
    from toque.data import errors, manifest

    try:
        pushed = push(args.repo, args.name, args.rev, args.paths, [manifest.DEFAULT_TAG, *args.tag])
    except ValueError as error:
        return _fail(str(error))
    except errors.DataError as error:
        print(f"toque code push: {' '.join(str(error).split())}", file=sys.stderr)
        return exitcodes.TRANSIENT if error.transient else exitcodes.PERMANENT
    if pushed.dirty:
        print(
            "toque code push: uncommitted changes are not in the snapshot; it holds "
            f"commit {pushed.commit[:12]}",
            file=sys.stderr,
        )
    files = len(pushed.result.manifest.files)
    print(f"snapshot of git:{pushed.commit} ({files} files)", file=sys.stderr)
    print(pushed.result.ref)
    return 0
