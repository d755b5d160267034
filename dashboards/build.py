"""Writes the dashboards' JSON into the chart: ``python -m dashboards.build`` (``make
dashboards``). ``--check`` only says which files are stale; tests/unit/test_dashboards.py
fails on a stale file the same way.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable, Sequence

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import encoder

from dashboards import ops, platform_team, queries

DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "toque-ops.json": ops.build,
    "toque-platform.json": platform_team.build,
}


def render(name: str) -> str:
    """The JSON of one dashboard, as committed (sorted keys, two-space indent)."""
    built = DASHBOARDS[name]().build()
    return encoder.JSONEncoder(sort_keys=True, indent=2).encode(built) + "\n"


def stale(directory: pathlib.Path = queries.GENERATED) -> list[pathlib.Path]:
    """Files that differ from what the code builds (missing ones included)."""
    out = []
    for name in DASHBOARDS:
        path = directory / name
        if not path.exists() or path.read_text() != render(name):
            out.append(path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=queries.GENERATED)
    parser.add_argument("--check", action="store_true", help="fail on stale files, write none")
    args = parser.parse_args(argv)
    if args.check:
        old = stale(args.out)
        for path in old:
            print(f"{path} is stale: run `make dashboards`", file=sys.stderr)
        return 1 if old else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (args.out / name).write_text(render(name))
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
