"""``toque operator``: runs the kopf operator (the operator Deployment's command)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def register(subs: Any) -> None:
    parser = subs.add_parser("operator", help="run the operator")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no leader election (peering); for a single replica or local runs",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="0 disables metrics")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz")
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    if args.metrics_port is not None:
        os.environ["TOQUE_METRICS_PORT"] = str(args.metrics_port)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:
        # kopf logs every successful handler call at INFO: one line per pod event.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import toque.handlers  # noqa: F401  - registers the handlers with kopf
    from toque.handlers import metrics

    if args.standalone:
        # The chart runs one standalone replica with the Recreate strategy: it is the only
        # writer by construction, so it leads from the start (no election to lose).
        metrics.leadership("standalone", True)

    asyncio.run(
        kopf.operator(
            standalone=args.standalone,
            namespaces=args.namespace or [],
            clusterwide=not args.namespace,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
