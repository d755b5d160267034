"""``toque serve`` end to end: fetch and verify the model, then serve it until SIGTERM.

Nothing listens before the model is verified: a missing expected digest (without
``--allow-unverified``), a digest mismatch, a missing model or a foreign type in it exits
``exitcodes.PERMANENT`` (3), an unreachable MLflow/MinIO ``exitcodes.TRANSIENT`` (75) after
retrying. Shutdown is graceful the way Kubernetes needs it: the first SIGTERM turns
``/readyz`` to 503 while requests are still served for ``drain_s`` (endpoints catch up),
then the listener closes, in-flight requests finish and the process exits 0; a second
signal exits at once. With ``workers > 1`` the parent loads the model, binds the socket and
forks workers that share both: the model's arrays stay one copy in memory (copy-on-write),
and ``gc.freeze`` keeps the children's garbage collector from writing to (and so copying)
the pages of the objects loaded before the fork. Called by ``toque.cli.serve_cmd``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import pathlib
import signal
import sys
import tempfile
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn

from toque.core import exitcodes, redact, retry
from toque.serving import app, model

LOG = logging.getLogger("toque.serve")


@dataclasses.dataclass(frozen=True)
class Options:
    model_uri: str
    model_name: str
    version: str
    expected_digest: str | None = None
    # Serve a model with no expected digest (ModelVersion spec.source.allowUnverified).
    allow_unverified: bool = False
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 8 << 20
    sample_rate: float = 0.01
    sample_bucket: str | None = None
    sample_namespace: str = "default"
    drain_s: float = 5.0
    dependency_timeout_s: float = 60.0
    sample_batch_rows: int = 1000
    sample_interval_s: float = 30.0
    batch_max_rows: int = 1024
    batch_max_wait_s: float = 0.002


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM first drains (readyz 503) and the exit status stays 0."""

    def __init__(self, config: uvicorn.Config, application: app.App, drain_s: float) -> None:
        super().__init__(config)
        self.application = application
        self.drain_s = drain_s
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.application.draining or self.drain_s <= 0:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        LOG.info(
            "signal %d: draining for %.1fs, then finishing in-flight requests", sig, self.drain_s
        )
        self.application.draining = True
        self._timer = threading.Timer(self.drain_s, lambda: setattr(self, "should_exit", True))
        self._timer.daemon = True
        self._timer.start()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutdown (exit status 143); a drained, orderly
        # stop is a success, so keep our handlers and do not re-raise.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def serve(options: Options) -> int:
    # Our retry loop decides how long to wait for MLflow; its client should fail fast.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # One OpenMP thread per worker (see ``model.one_thread``), in every thread: libgomp reads
    # this when scikit-learn or torch first loads it, which is below.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Nothing may be unpickled until the model is verified (MLflow's default allows it).
    model.deny_deserialization()
    try:
        fetched = model.fetch(
            options.model_uri,
            options.expected_digest,
            options.dependency_timeout_s,
            allow_unverified=options.allow_unverified,
        )
        predictor = model.load(fetched)
    except model.ModelRejectedError as error:
        LOG.error("%s", redact.redact(str(error)))
        return exitcodes.PERMANENT
    except retry.DependencyDownError as error:
        LOG.error("dependency unavailable: %s", redact.redact(str(error)))
        return exitcodes.TRANSIENT
    LOG.info(
        "model %s version %s (%s) %s",
        options.model_name,
        options.version,
        fetched.digest,
        "verified" if fetched.verified else "NOT verified (--allow-unverified)",
    )
    peers = pathlib.Path(tempfile.mkdtemp(prefix="toque-metrics-")) if options.workers > 1 else None
    settings = app.Settings(
        model_name=options.model_name,
        version=options.version,
        digest=fetched.digest,
        max_body_bytes=options.max_body_bytes,
        sample_rate=options.sample_rate,
        sample_bucket=options.sample_bucket,
        sample_namespace=options.sample_namespace,
        peers_dir=peers,
        sample_batch_rows=options.sample_batch_rows,
        sample_interval_s=options.sample_interval_s,
        batch_max_rows=options.batch_max_rows,
        batch_max_wait_s=options.batch_max_wait_s,
    )
    application = app.App(settings, predictor, fetched.bins)
    config = uvicorn.Config(
        application,
        host=options.host,
        port=options.port,
        loop=_loop(),
        http=_http(),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,
        backlog=2048,
        timeout_keep_alive=30,
    )
    freeze_loaded()
    if options.workers <= 1:
        DrainingServer(config, application, options.drain_s).run()
        return exitcodes.OK
    return _prefork(config, application, options)


def freeze_loaded() -> None:
    """Move everything loaded so far out of the garbage collector's sight.

    The model, scikit-learn, pandas and MLflow leave ~400k tracked objects behind. Requests
    that build DataFrames promote short-lived objects into the oldest generation fast enough
    to trigger a full collection every second or so, and a full collection that walks all of
    them stalls the event loop for 100-200 ms: the p99 of a pandas model. Frozen, they are
    never walked (and, with several workers, never written to, so their pages stay shared).
    """
    gc.collect()
    gc.freeze()


def _prefork(config: uvicorn.Config, application: app.App, options: Options) -> int:
    """Parent: bind, fork workers sharing the socket, forward signals, reap them."""
    sock = config.bind_socket()
    children: list[int] = []
    for _ in range(options.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                DrainingServer(config, application, options.drain_s).run(sockets=[sock])
            except BaseException:
                LOG.exception("worker failed")
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)

    def forward(sig: int, frame: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = exitcodes.OK
    for child in children:
        _, code = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(code) != 0:
            status = exitcodes.FAILED
    sock.close()
    return status
