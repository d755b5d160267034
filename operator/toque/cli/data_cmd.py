"""``toque data``: push, pull, list, show, tag, diff and verify versioned datasets.

Thin over ``toque.data.store.DataStore``: settings come from the environment
(``TOQUE_S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``TOQUE_DATA_BUCKET``). Results go to stdout (a push prints only the pinned reference, for
scripts); progress and status go to stderr. A ``DataError`` becomes one line on stderr and
exit code 3 when retrying cannot help, 75 (EX_TEMPFAIL) when the store is unavailable;
``verify`` exits 1 when it found damage. Registered by ``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toque.core import exitcodes
from toque.data import errors

if TYPE_CHECKING:
    from toque.data import store

# The store's modules (minio, pydantic) load when a data command runs, not for every `toque`.

EXIT_DAMAGED = 1
EXIT_PERMANENT = exitcodes.PERMANENT
EXIT_TRANSIENT = exitcodes.TRANSIENT

Handler = Callable[[argparse.Namespace], int]


def register(subs: Any) -> None:
    parser = subs.add_parser("data", help="versioned datasets in S3/MinIO")
    commands = parser.add_subparsers(dest="data_command", required=True)

    push = commands.add_parser("push", help="store a file or directory as a new version")
    push.add_argument("path", type=pathlib.Path)
    push.add_argument("--name", required=True, help="dataset name")
    push.add_argument(
        "--tag", action="append", default=[], help="also move this tag (repeatable); "
        "'latest' always moves"
    )  # fmt: skip
    push.add_argument("-q", "--quiet", action="store_true", help="no progress or status")
    push.set_defaults(func=_guard(_push))

    pull = commands.add_parser("pull", help="download and verify a version into DEST")
    pull.add_argument("ref", help="NAME@sha256:…, NAME:TAG or NAME (= NAME:latest)")
    pull.add_argument("dest", type=pathlib.Path, help="directory to write the files into")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress or status")
    pull.set_defaults(func=_guard(_pull))

    ls = commands.add_parser("ls", help="list datasets, or the versions and tags of one")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_guard(_ls))

    show = commands.add_parser("show", help="print a version's manifest")
    show.add_argument("ref")
    show.add_argument("--json", action="store_true", help="the manifest as stored")
    show.set_defaults(func=_guard(_show))

    tag = commands.add_parser("tag", help="point NAME:TAG at the version REF resolves to")
    tag.add_argument("ref")
    tag.add_argument("tag")
    tag.set_defaults(func=_guard(_tag))

    compare = commands.add_parser("diff", help="schema, row-count and file changes")
    compare.add_argument("before")
    compare.add_argument("after")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=_guard(_diff))

    check = commands.add_parser(
        "verify",
        help="re-hash what is stored; list damaged blobs and the versions they break",
    )
    check.add_argument(
        "ref", nargs="?", help="NAME (all its versions), NAME:TAG or NAME@sha256:…; "
        "default: every version in the store"
    )  # fmt: skip
    check.add_argument("--json", action="store_true")
    check.add_argument("-q", "--quiet", action="store_true", help="no progress or status")
    check.set_defaults(func=_guard(_verify))


def _guard(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.WARNING, format="toque data: %(message)s")
        try:
            return handler(args)
        except errors.DataError as exc:
            message = " ".join(str(exc).split())
            print(f"toque data {args.data_command}: {message}", file=sys.stderr)
            return EXIT_TRANSIENT if exc.transient else EXIT_PERMANENT
        except OSError as exc:
            # Local trouble (disk full, permissions): a message, not a traceback.
            print(f"toque data {args.data_command}: {exc}", file=sys.stderr)
            return EXIT_PERMANENT

    return run


def _store(args: argparse.Namespace) -> store.DataStore:
    from toque.data import store

    quiet = getattr(args, "quiet", False)
    return store.DataStore.from_env(progress=not quiet and sys.stderr.isatty())


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _status(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr)


def _push(args: argparse.Namespace) -> int:
    from toque.data import manifest

    result = _store(args).push(args.path, args.name, [manifest.DEFAULT_TAG, *args.tag])
    tags = ", ".join(result.tags_moved) or "none moved"
    if result.protection is not None:
        _status(args, f"bucket: {result.protection.describe()}")
    for key, problem in result.repaired:
        _status(args, f"repaired {key}: it was damaged ({problem}); stored again from your files")
    if result.reused and not result.repaired:
        _status(args, f"already stored, nothing uploaded; checked intact (tags: {tags})")
    elif result.reused:
        _status(
            args, f"already stored; repaired {len(result.repaired)} damaged objects (tags: {tags})"
        )
    else:
        files = len(result.manifest.files)
        _status(
            args,
            f"uploaded {result.uploaded_files} of {files} files "
            f"({_size(result.uploaded_bytes)}; the rest were already stored) (tags: {tags})",
        )
    print(result.ref)
    return 0


def _pull(args: argparse.Namespace) -> int:
    found = _store(args).pull(args.ref, args.dest)
    _status(args, f"{found.ref}: {len(found.files)} files verified in {args.dest}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    data = _store(args)
    if not args.name:
        names = data.datasets()
        print(json.dumps(names) if args.json else "\n".join(names))
        return 0
    versions = data.versions(args.name)
    if args.json:
        rows = [
            {"digest": v.digest, "stored": v.stored.isoformat(), "tags": list(v.tags)}
            for v in versions
        ]
        print(json.dumps({"name": args.name, "versions": rows}, indent=2))
        return 0
    print(f"{'STORED':<20}  {'DIGEST':<71}  TAGS")
    for v in versions:
        print(f"{v.stored:%Y-%m-%d %H:%M:%S}  {v.digest}  {', '.join(v.tags)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    found = _store(args).show(args.ref)
    if args.json:
        sys.stdout.write(found.to_json().decode())
        return 0
    print(f"ref:      {found.ref}")
    print(f"created:  {found.created} by {found.creator} (toque {found.toque_version})")
    print(f"files:    {len(found.files)} ({_size(found.size)})")
    if found.rows is not None:
        print(f"rows:     {found.rows}")
    print(f"\n{'SIZE':>10}  {'SHA256':<12}  PATH")
    for f in found.files:
        print(f"{_size(f.size):>10}  {f.sha256[:12]}  {f.path}")
    for table in found.tables:
        print(f"\ntable {table.path} ({table.rows} rows)")
        print(f"  {'COLUMN':<24}  {'DTYPE':<16}  KIND")
        for c in table.columns:
            print(f"  {c.name:<24}  {c.dtype:<16}  {c.kind}")
    return 0


def _tag(args: argparse.Namespace) -> int:
    resolved = _store(args).tag(args.ref, args.tag)
    print(f"{resolved.ref} -> {resolved.pinned}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from toque.data import diff

    data = _store(args)
    result = diff.diff(data.show(args.before), data.show(args.after))
    print(json.dumps(result.to_dict(), indent=2) if args.json else "\n".join(result.lines()))
    return 0


def _verify(args: argparse.Namespace) -> int:
    quiet = args.quiet or args.json
    report = _store(args).verify(args.ref, progress=not quiet and sys.stderr.isatty())
    if args.json:
        print(json.dumps(_report_dict(report), indent=2))
        return 0 if report.ok else EXIT_DAMAGED
    print(f"bucket: {report.protection.describe()}")
    for ref, problem in report.broken_manifests:
        print(f"DAMAGED manifest of {ref}: {problem}")
    for damage in report.damaged:
        what = "DAMAGED" if damage.breaks_reads else "REPLACED"
        print(f"{what} {damage.key}: {damage.problem}")
        for ref, paths in damage.breaks:
            shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            verb = (
                "breaks" if damage.breaks_reads else "read by (unaffected: pinned intact version)"
            )
            print(f"  {verb} {ref} ({shown})")
        if damage.intact_version:
            print(f"  an intact copy is still stored as version {damage.intact_version}")
    problems = len(report.damaged) + len(report.broken_manifests)
    broken = {r for d in report.damaged if d.breaks_reads for r, _ in d.breaks}
    broken |= {r for r, _ in report.broken_manifests}
    print(
        f"verified {len(report.versions)} versions, {report.blobs} blobs "
        f"({_size(report.bytes)}): "
        + (
            "all intact"
            if report.ok
            else f"{problems} damaged, {len(broken)} versions broken; push the same files "
            "again to repair"
        )
    )
    return 0 if report.ok else EXIT_DAMAGED


def _report_dict(report: store.VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "protection": {
            "versioning": report.protection.versioning,
            "objectLock": report.protection.object_lock,
            "retention": report.protection.retention,
            "protected": report.protection.protected,
        },
        "versions": list(report.versions),
        "blobs": report.blobs,
        "bytes": report.bytes,
        "damaged": [
            {
                "key": d.key,
                "problem": d.problem,
                "breaksReads": d.breaks_reads,
                "versions": {ref: list(paths) for ref, paths in d.breaks},
                "intactVersion": d.intact_version,
            }
            for d in report.damaged
        ],
        "brokenManifests": {ref: problem for ref, problem in report.broken_manifests},
    }
