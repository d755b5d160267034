"""``toque train``: the training pod's entrypoint (see ``toque.trainer.run``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subs: Any) -> None:
    parser = subs.add_parser("train", help="run a training function (the training pod's command)")
    parser.add_argument("--entrypoint", required=True, help="module.path:function")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toque.trainer import run as trainer

    return trainer.main(args.entrypoint)
