"""Operator-wide kopf settings and the metrics endpoint, set once at startup."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
import prometheus_client

from toque.api import constants

# Every object the operator creates carries this label. The API server filters the watches
# of these kinds with it, so the operator never receives (or holds in memory) the pods,
# Jobs and Deployments of the rest of the cluster.
OWNED_SELECTOR = f"{constants.LABEL_MANAGED_BY}=toque"
CHILD_RESOURCES = (("", "v1", "pods"), ("batch", "v1", "jobs"), ("apps", "v1", "deployments"))


def watch_only_owned_children(settings: kopf.OperatorSettings) -> None:
    for group, version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, version, plural] = OWNED_SELECTOR


@kopf.on.startup()
def configure(**kwargs: Any) -> None:
    settings: kopf.OperatorSettings = kwargs["settings"]
    # kopf's bookkeeping goes to annotations, so status holds only our fields. Its own
    # prefix, not toque.dev: kopf leaves every annotation under its prefix out of the diff,
    # and the user's toque.dev/action annotation must trigger an update.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=constants.KOPF_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=constants.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{constants.GROUP}/finalizer"
    # Without server and client timeouts a watch can hang silently for hours (kopf #585).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    watch_only_owned_children(settings)
    # kopf's own "handler succeeded" Events are noise next to ours.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = int(os.environ.get("TOQUE_WORKERS", "8"))


def serve_metrics(logger: logging.Logger) -> None:
    """The metrics endpoint, started before any election: a standby is scraped too, so
    ``toque_operator_leader`` shows both replicas and a takeover shows on the dashboard."""
    port = int(os.environ.get("TOQUE_METRICS_PORT", "8080"))
    if port:
        addr = os.environ.get("TOQUE_METRICS_ADDR", "0.0.0.0")
        prometheus_client.start_http_server(port, addr=addr)
        logger.info("metrics on %s:%d", addr, port)
