"""``toque serve``: the model server pod's entrypoint (see ``toque.serving.server``)."""

from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Any

NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def register(subs: Any) -> None:
    parser = subs.add_parser("serve", help="serve a model version (the serving pod's command)")
    parser.add_argument(
        "--model-uri",
        required=True,
        help="models:/<name>/<version>, models:/m-<id> or runs:/<id>/model",
    )
    parser.add_argument("--model-name", required=True, help="registered model name (metrics)")
    parser.add_argument("--version", required=True, help="registry version (metrics)")
    parser.add_argument("--expected-digest", help="sha256:… the registry records; refuse others")
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="serve the model even without --expected-digest (it is refused otherwise)",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1: scale with pods)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=8 << 20)
    parser.add_argument(
        "--sample-rate", type=float, default=0.01, help="share of rows written to the sample bucket"
    )
    parser.add_argument("--sample-bucket", help="bucket for sampled rows (off when unset)")
    parser.add_argument(
        "--sample-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="the ModelVersion's namespace, a segment of the sample keys "
        "(serving-samples/NAMESPACE/MODEL/VERSION/); default: $POD_NAMESPACE or default",
    )
    parser.add_argument(
        "--batch-max-rows",
        type=int,
        default=1024,
        help="micro-batching: rows one model call may take from concurrent requests (1: off)",
    )
    parser.add_argument(
        "--batch-max-latency-ms",
        type=float,
        default=2.0,
        help="micro-batching: the longest a request waits in the queue for a busy model",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=float(os.environ.get("TOQUE_DRAIN_SECONDS", "5")),
        help="after SIGTERM, keep serving with readyz 503 this long",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from toque.core import exitcodes, redact
    from toque.serving import server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    redact.install()  # also what MLflow, botocore and uvicorn log
    if (
        not 0 <= args.sample_rate <= 1
        or args.workers < 1
        or args.max_body_bytes < 1
        or args.batch_max_rows < 1
        or not 0 <= args.batch_max_latency_ms <= 1000
        or not NAMESPACE.fullmatch(args.sample_namespace)
    ):
        logging.getLogger("toque.serve").error(
            "--sample-rate must be in [0, 1], --batch-max-latency-ms in [0, 1000], "
            "--workers, --max-body-bytes and --batch-max-rows positive, --sample-namespace a "
            "namespace name (lower-case letters, digits and '-', at most 63)"
        )
        return exitcodes.PERMANENT
    return server.serve(
        server.Options(
            model_uri=args.model_uri,
            model_name=args.model_name,
            version=args.version,
            expected_digest=args.expected_digest,
            allow_unverified=args.allow_unverified,
            host=args.host,
            port=args.port,
            workers=args.workers,
            max_body_bytes=args.max_body_bytes,
            sample_rate=args.sample_rate,
            sample_bucket=args.sample_bucket,
            sample_namespace=args.sample_namespace,
            drain_s=args.drain_seconds,
            dependency_timeout_s=float(os.environ.get("TOQUE_DEPENDENCY_TIMEOUT", "60")),
            sample_batch_rows=int(os.environ.get("TOQUE_SAMPLE_BATCH_ROWS", "1000")),
            sample_interval_s=float(os.environ.get("TOQUE_SAMPLE_INTERVAL_SECONDS", "30")),
            batch_max_rows=args.batch_max_rows,
            batch_max_wait_s=args.batch_max_latency_ms / 1000,
        )
    )
