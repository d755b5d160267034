"""Entry point of the ``toque`` command: dispatches to the sub-commands."""

from __future__ import annotations

import argparse
import sys

from toque.cli import (
    code_cmd,
    data_cmd,
    drift_cmd,
    init_cmd,
    operator_cmd,
    report_cmd,
    reproduce_cmd,
    rollout_cmd,
    serve_cmd,
    status_cmd,
    submit_cmd,
    train_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toque", description="Kubernetes-native MLOps.")
    subs = parser.add_subparsers(dest="command", required=True)
    operator_cmd.register(subs)
    data_cmd.register(subs)
    code_cmd.register(subs)
    train_cmd.register(subs)
    serve_cmd.register(subs)
    rollout_cmd.register(subs)
    drift_cmd.register(subs)
    init_cmd.register(subs)
    submit_cmd.register(subs)
    reproduce_cmd.register(subs)
    report_cmd.register(subs)
    status_cmd.register(subs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
