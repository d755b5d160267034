"""One replica of an elected operator: stand by, lead, step down. Called by ``toque operator
--leader-elect``.

The replica serves ``/healthz`` and ``/readyz`` itself (kopf's liveness endpoint runs only in
the leader):

- ``/healthz`` (liveness) fails only when the replica is broken for good: kopf stopped in a
  leader that did not step down. An unreachable API server is not a reason to restart.
- ``/readyz`` (readiness) answers ``active`` or ``standby`` in its body. Both are Ready when
  healthy (a standby reaches the API server and watches the Lease; a leader's kopf has
  started): a standby held NotReady would stall every rolling update of the Deployment and
  keep Argo CD's view of the chart Progressing for ever. The role is told apart by that body,
  the pod's ``toque.dev/role`` label, ``toque_operator_leader`` and the Lease's holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from toque.handlers import election, metrics

log = logging.getLogger("toque.replica")
ELECTION = "lease"
# How long a leader told to stop waits for kopf before it hands the Lease over anyway: kopf
# gives its handlers 5 s and more, and on a loaded node its stop outlasted the 15 s Lease, so
# the standby waited the Lease out instead of leading at once.
STOP_GRACE_S = 3.0


class Health:
    def __init__(self, elector: election.Elector) -> None:
        self.elector = elector
        self.role = election.STANDBY
        self.operator_ready = asyncio.Event()
        self.broken = ""

    def ready(self) -> tuple[bool, str]:
        if self.broken:
            return False, self.broken
        if self.role == election.ACTIVE:
            return self.operator_ready.is_set(), election.ACTIVE
        answered = self.elector.last_answer
        fresh = answered is not None and (
            self.elector.clock() - answered < self.elector.timing.lease_duration
        )
        return fresh, election.STANDBY if fresh else "standby, the API server does not answer"

    async def healthz(self, _: web.Request) -> web.Response:
        if self.broken:
            return web.Response(status=500, text=self.broken + "\n")
        return web.Response(text=self.role + "\n")

    async def readyz(self, _: web.Request) -> web.Response:
        ok, text = self.ready()
        return web.Response(status=200 if ok else 503, text=text + "\n")

    async def serve(self, host: str, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


async def run(
    elector: election.Elector,
    pod: str,
    run_operator: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, object]],
    health_host: str,
    health_port: int,
    *,
    stop_grace_s: float = STOP_GRACE_S,
    exit_now: Callable[[int], object] = os._exit,
) -> int:
    """Stand by until this replica holds the Lease, then run ``run_operator(ready, stop)``
    (kopf, with its ready and stop flags) while renewing it. Returns the exit code; exits the
    process at once on losing the Lease, and on a SIGTERM that kopf does not obey within
    ``stop_grace_s`` (after releasing the Lease)."""
    health = Health(elector)
    runner = await health.serve(health_host, health_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics.leadership(ELECTION, False)
    labelling = asyncio.create_task(
        election.label_role(elector.kube, elector.namespace, pod, election.STANDBY)
    )
    log.info("%s stands by for Lease %s/%s", elector.identity, elector.namespace, elector.name)
    acquiring = asyncio.create_task(elector.acquire())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not acquiring.done():
        acquiring.cancel()
        await runner.cleanup()
        return 0
    stopping.cancel()
    health.role = election.ACTIVE
    metrics.leadership(ELECTION, True)
    log.info("%s leads: starting the operator", elector.identity)
    # The standby label must not land after this one.
    labelling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await labelling
    labelling = asyncio.create_task(
        election.label_role(elector.kube, elector.namespace, pod, election.ACTIVE)
    )
    kopf_stop = asyncio.Event()
    operating: asyncio.Task[object] = asyncio.create_task(
        run_operator(health.operator_ready, kopf_stop)
    )
    holding = asyncio.create_task(elector.hold())
    told = asyncio.Event()

    async def signalled() -> None:
        # kopf puts its own SIGTERM handler in place while it starts; once it is ready the
        # signal is ours again, so that its stop can be bounded.
        await health.operator_ready.wait()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, told.set)
        await told.wait()

    signals = asyncio.create_task(signalled())
    await asyncio.wait({operating, holding, signals}, return_when=asyncio.FIRST_COMPLETED)
    if signals.done() and not operating.done() and not holding.done():
        log.info("%s told to stop: stopping the operator", elector.identity)
        kopf_stop.set()
        await asyncio.wait(
            {operating, holding}, timeout=stop_grace_s, return_when=asyncio.FIRST_COMPLETED
        )
        if not operating.done() and not holding.done():
            # Hand over now: every write is idempotent (deterministic names, server-side
            # apply), so the new leader redoes whatever a cut-short handler left half done.
            # The blocking release keeps the loop, so no handler writes after it.
            log.warning(
                "%s: the operator did not stop within %.0f s: releasing the Lease and exiting",
                elector.identity,
                stop_grace_s,
            )
            elector.release()
            logging.shutdown()
            exit_now(0)
            return 0
    signals.cancel()
    if holding.done():
        # Another replica may lead already: stop now, mid-handler if need be (as above).
        log.error("%s lost the Lease (%s): exiting", elector.identity, holding.result())
        health.broken = "lost the Lease"
        logging.shutdown()
        exit_now(1)
        return 1
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding
    await asyncio.to_thread(elector.release)
    await runner.cleanup()
    error = operating.exception()
    if error is not None:
        log.error("the operator stopped: %s", error)
        return 1
    return 0
