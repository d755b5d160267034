"""``toque drift``: profile a reference, check current rows against it.

``toque drift profile --data REF [--label COL] [--out FILE]`` writes a reference profile
(JSON, a superset of the model server's ``feature-bins.json``). ``toque drift check
--reference REF --current CUR... [--rules JSON] [--format markdown|json] [--out FILE]
[--termination-log PATH] [--window 1h]`` prints a report and exits 0 when healthy, 1 when
drifted, 3 when there were too few rows to tell, 2 for a usage or input error (one line on
stderr, no traceback). References and current rows are read by ``toque.drift.sources``.
Run by people and by the drift monitor's Job pods (``--termination-log
/dev/termination-log`` hands the operator a compact JSON report). Registered by
``toque.cli.main``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toque.drift import types

# numpy, pandas and scipy load when a drift command runs, not for every `toque`.

EXIT_HEALTHY = 0
EXIT_DRIFTED = 1
EXIT_INPUT = 2
EXIT_INSUFFICIENT = 3

Handler = Callable[[argparse.Namespace], int]


def register(subs: Any) -> None:
    parser = subs.add_parser("drift", help="data drift: reference profiles and checks")
    commands = parser.add_subparsers(dest="drift_command", required=True)

    profile = commands.add_parser("profile", help="profile reference rows into a JSON file")
    profile.add_argument(
        "--data", required=True, help="a .parquet/.csv file or directory, or dataset:NAME@TAG"
    )
    _reference_options(profile)
    profile.add_argument("--out", type=pathlib.Path, help="write here (default: stdout)")
    profile.add_argument("--bins", type=int, default=20, help="quantile buckets per column")
    profile.add_argument("--top-k", type=int, default=50, help="categories kept per column")
    profile.add_argument(
        "--chunks", type=int, default=10, help="reference chunks that calibrate auto thresholds"
    )
    profile.set_defaults(func=_guard(_profile))

    check = commands.add_parser("check", help="compare current rows with a reference")
    check.add_argument(
        "--reference", required=True, help="a profile .json, a .parquet/.csv file or "
        "directory, dataset:NAME@TAG, or runs:/RUN_ID"
    )  # fmt: skip
    check.add_argument(
        "--current", required=True, action="extend", nargs="+",
        help=".parquet/.csv files or directories, or samples:NAMESPACE/MODEL/VERSION",
    )  # fmt: skip
    _reference_options(check)
    check.add_argument(
        "--rules", help="the drift rules as JSON (camelCase, as in the CRD), or a file of it"
    )
    check.add_argument("--format", choices=("markdown", "json"), default="markdown")
    check.add_argument("--out", type=pathlib.Path, help="write the report here (default: stdout)")
    check.add_argument(
        "--termination-log", type=pathlib.Path, help="also write a compact JSON report here"
    )
    check.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 whatever the verdict (2 still means bad input): for scheduled Jobs, where "
        "a drift verdict is a result, not a failed run",
    )
    check.add_argument(
        "--window", default="1h", help="samples: only files written this recently (e.g. 30m, 1d)"
    )
    check.set_defaults(func=_guard(_check))


def _reference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", help="the reference's label column (left out of the features)")
    parser.add_argument(
        "--classes", help="class names, comma-separated, in the order of the probability lists"
    )


def _guard(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from toque.drift import types

        try:
            return handler(args)
        except (types.DriftError, OSError) as exc:
            message = " ".join(str(exc).split())
            print(f"toque drift {args.drift_command}: {message}", file=sys.stderr)
            return EXIT_INPUT

    return run


def _classes(args: argparse.Namespace) -> list[str] | None:
    return [c.strip() for c in args.classes.split(",")] if args.classes else None


def _write(text: str, out: pathlib.Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


def _profile(args: argparse.Namespace) -> int:
    from toque.drift import profile, sources

    if args.data.endswith(".json") or args.data.startswith(sources.RUNS):
        print("toque drift profile: --data takes rows, not a profile", file=sys.stderr)
        return EXIT_INPUT
    if min(args.bins, args.top_k, args.chunks) < 1:
        print("toque drift profile: --bins, --top-k and --chunks must be >= 1", file=sys.stderr)
        return EXIT_INPUT
    frame, source = sources.load_rows(args.data)
    built = profile.build_profile(
        **sources.split_frame(frame, args.label, _classes(args)),
        bins=args.bins,
        top_k=args.top_k,
        chunks=args.chunks,
        source=source,
    )
    _write(profile.to_json(built).decode() + "\n", args.out)
    print(f"profiled {built.rows} rows, {len(built.features)} features ({source})", file=sys.stderr)
    return EXIT_HEALTHY


def _rules(text: str | None) -> types.Rules:
    from toque.drift import types

    if text is None:
        return types.Rules()
    if not text.lstrip().startswith("{"):
        try:
            text = pathlib.Path(text).read_text()
        except FileNotFoundError as exc:
            raise types.InputError(f"--rules: no such file: {text}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise types.InputError(f"--rules is not JSON: {exc}") from exc
    return types.rules_from_dict(data)


def _check(args: argparse.Namespace) -> int:
    from toque.drift import check, current, report, sources

    rules = _rules(args.rules)
    window = sources.parse_window(args.window)
    reference = sources.load_reference(args.reference, label=args.label, classes=_classes(args))
    frame = sources.load_current(args.current, window)
    if frame is None:
        counts = current.empty(reference)
    else:
        # Only the features the rules monitor must be in the current rows.
        monitored = reference
        if rules.features is not None:
            kept = {n: f for n, f in reference.features.items() if n in rules.features}
            monitored = dataclasses.replace(reference, features=kept)
        classes = reference.performance.classes if reference.performance else None
        predictions, proba = sources.outputs(frame, classes)
        counts = current.count(monitored, frame, predictions=predictions, proba=proba)
    result = check.check(reference, counts, rules, raw=frame)
    if args.format == "json":
        text = json.dumps(report.to_dict(result), indent=1) + "\n"
    else:
        text = report.to_markdown(result)
    _write(text, args.out)
    if args.termination_log is not None:
        args.termination_log.write_text(report.compact(result))
    if args.exit_zero:
        return EXIT_HEALTHY
    if result.verdict == "InsufficientData":
        return EXIT_INSUFFICIENT
    return EXIT_DRIFTED if result.verdict == "Drifted" else EXIT_HEALTHY
