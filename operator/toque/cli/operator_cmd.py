"""``toque operator``: runs the kopf operator (the operator Deployment's command).

``--leader-elect`` (the chart's default) runs it as one replica of several: only the holder
of a Lease runs kopf (``toque.handlers.replica``). ``--standalone`` runs kopf at once, for a
single replica or a local run.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import socket
import uuid
from typing import Any

SERVICEACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def register(subs: Any) -> None:
    parser = subs.add_parser("operator", help="run the operator")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--standalone",
        action="store_true",
        help="no leader election: for a single replica or a local run",
    )
    mode.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of the Lease reconciles",
    )
    election = parser.add_argument_group("leader election (--leader-elect)")
    election.add_argument("--lease-name", default="toque-operator")
    election.add_argument(
        "--lease-namespace",
        default=None,
        help="default: $POD_NAMESPACE, else the pod's ServiceAccount namespace",
    )
    election.add_argument(
        "--identity",
        default=None,
        help="this replica's name in the Lease; default: $POD_NAME_<random>",
    )
    election.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS")
    election.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS")
    election.add_argument(
        "--health-port",
        type=int,
        default=8081,
        help="/healthz and /readyz (the role in the body)",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="0 disables metrics")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="kopf's liveness endpoint with --standalone",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    import kopf

    from toque.reconcile import leaderlease

    timing = leaderlease.Timing(args.lease_duration, args.renew_deadline, args.retry_period)
    if args.leader_elect and timing.problems():
        raise SystemExit("toque operator: " + "; ".join(timing.problems()))
    lease_namespace = args.lease_namespace or _own_namespace()
    if args.leader_elect and not lease_namespace:
        raise SystemExit(
            "toque operator: --leader-elect needs --lease-namespace (or $POD_NAMESPACE)"
        )
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
    from toque.handlers import metrics, settings

    settings.serve_metrics(logging.getLogger("toque.operator"))

    def operator(
        liveness: str | None, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> Any:
        return kopf.operator(
            standalone=True,  # the Lease elects the leader, not kopf's peering
            namespaces=args.namespace or [],
            clusterwide=not args.namespace,
            liveness_endpoint=liveness,
            ready_flag=ready,
            stop_flag=stop,
        )

    if args.standalone:
        # One replica, the only writer by construction: it leads from the start.
        metrics.leadership("standalone", True)
        asyncio.run(operator(args.liveness or None))
        return 0

    from toque.clients import kube as kubeclient
    from toque.handlers import election, replica

    pod = os.environ.get("POD_NAME", "")
    elector = election.Elector(
        kube=kubeclient.Kube.from_environment(),
        name=args.lease_name,
        namespace=lease_namespace,
        # A restarted process is a new candidate (client-go's hostname_uuid): it must not
        # resume a Lease its crashed predecessor held, which another replica may be taking.
        identity=args.identity or f"{pod or socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        timing=timing,
    )
    return asyncio.run(
        replica.run(
            elector,
            pod,
            lambda ready, stop: operator(None, ready, stop),
            "0.0.0.0",
            args.health_port,
        )
    )


def _own_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICEACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return ""
