"""Lease-based leader election of the operator's replicas; ``toque operator --leader-elect``
(the chart's default) runs it.

Every replica starts as a standby: it serves its health and metrics endpoints and looks at the
Lease every retry period. The one that holds the Lease starts kopf; the others run no handler
at all, so two replicas never reconcile the same object. ``toque.reconcile.leaderlease``
decides; this module reads and writes the Lease, tells the world the replica's role (the
pod's ``toque.dev/role`` label, ``toque_operator_leader``, the body of ``/readyz``) and steps
down the hard way: a leader that cannot renew for the renew deadline exits the process,
before its Lease can run out, and comes back as a standby.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from toque.api import constants
from toque.clients import kube as kubeclient
from toque.reconcile import leaderlease as ll

log = logging.getLogger("toque.election")

ROLE_LABEL = f"{constants.GROUP}/role"
ACTIVE, STANDBY = "active", "standby"


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One look at the Lease: ``holding`` (we hold it now), ``holder`` (whoever does, as
    read; None when the API server did not answer)."""

    holding: bool
    holder: str | None


@dataclasses.dataclass
class Elector:
    kube: kubeclient.Kube
    name: str
    namespace: str
    identity: str
    timing: ll.Timing = dataclasses.field(default_factory=ll.Timing)
    clock: Callable[[], float] = time.monotonic
    # The record last seen and when (our clock) it was first seen: the expiry clock.
    _seen: tuple[Any, ...] | None = None
    _seen_at: float = 0.0
    last_answer: float | None = None  # when the API server last answered a look
    last_renewed: float | None = None  # when we last wrote the Lease as its holder

    def look(self) -> Outcome:
        """Read the Lease and act on ``decide`` once: create, take over, renew or wait."""
        timeout = max(1.0, self.timing.renew_deadline / 2)
        try:
            found = self.kube.request("GET", lease_path(self.namespace, self.name), timeout=timeout)
        except kubeclient.ApiException as error:
            if error.status != 404:
                log.warning("reading Lease %s/%s: %s", self.namespace, self.name, _short(error))
                return Outcome(False, None)
            found = None
        except Exception as error:
            log.warning("reading Lease %s/%s: %s", self.namespace, self.name, _short(error))
            return Outcome(False, None)
        now = self.clock()
        self.last_answer = now
        record = ll.Record.from_lease(found) if found is not None else None
        fingerprint = record.fingerprint() if record is not None else None
        if fingerprint != self._seen:
            self._seen, self._seen_at = fingerprint, now
        action = ll.decide(record, self.identity, now - self._seen_at, self.timing.lease_duration)
        if action is ll.Action.WAIT:
            assert record is not None
            return Outcome(False, record.holder)
        body = ll.lease_body(
            action,
            record,
            self.identity,
            self.name,
            self.namespace,
            self.timing.lease_duration,
            dt.datetime.now(dt.UTC),
        )
        try:
            if action is ll.Action.CREATE:
                written = self.kube.request(
                    "POST", lease_path(self.namespace), body=body, timeout=timeout
                )
            else:
                written = self.kube.request(
                    "PUT", lease_path(self.namespace, self.name), body=body, timeout=timeout
                )
        except kubeclient.ApiException as error:
            if error.status == 409:
                # Another replica wrote first: it holds the Lease now.
                return Outcome(False, record.holder if record else None)
            log.warning("writing Lease %s/%s: %s", self.namespace, self.name, _short(error))
            return Outcome(False, None)
        except Exception as error:
            log.warning("writing Lease %s/%s: %s", self.namespace, self.name, _short(error))
            return Outcome(False, None)
        now = self.clock()
        written_record = ll.Record.from_lease(written)
        self._seen, self._seen_at = written_record.fingerprint(), now
        self.last_renewed = now
        if action is not ll.Action.RENEW:
            log.info(
                "%s took Lease %s/%s over from %r (%s)",
                self.identity,
                self.namespace,
                self.name,
                record.holder if record else None,
                action.value,
            )
        return Outcome(True, self.identity)

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease."""
        while True:
            outcome = await asyncio.to_thread(self.look)
            if outcome.holding:
                return
            await asyncio.sleep(self._jittered())

    async def hold(self) -> str:
        """Renews the Lease every retry period; returns why leadership was lost: another
        replica holds it, or no renewal succeeded for the renew deadline."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            outcome = await asyncio.to_thread(self.look)
            if outcome.holding:
                continue
            if outcome.holder is not None and outcome.holder != self.identity:
                return f"replica {outcome.holder!r} holds the Lease"
            since = self.clock() - (self.last_renewed or 0.0)
            if since >= self.timing.renew_deadline:
                deadline = self.timing.renew_deadline
                return f"no renewal for {since:.1f} s (renew deadline {deadline} s)"

    def release(self) -> None:
        """Give the Lease up (a clean shutdown), so a standby need not wait it out."""
        try:
            found = self.kube.request("GET", lease_path(self.namespace, self.name), timeout=5)
            record = ll.Record.from_lease(found)
            if record.holder != self.identity:
                return
            body = ll.released_body(record, self.name, self.namespace, dt.datetime.now(dt.UTC))
            self.kube.request("PUT", lease_path(self.namespace, self.name), body=body, timeout=5)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as error:
            log.warning("releasing Lease %s/%s: %s", self.namespace, self.name, _short(error))

    def _jittered(self) -> float:
        # client-go's JitterFactor 1.2: standbys do not look in lockstep.
        return self.timing.retry_period * (1.0 + 1.2 * random.random())


def set_role_label(kube: kubeclient.Kube, namespace: str, pod: str, role: str) -> bool:
    """Label our own pod ``toque.dev/role=active|standby``: ``kubectl get pods -L
    toque.dev/role`` tells the replicas apart. Best effort: the Lease is the truth. True
    when the label is set (or there is no pod to label)."""
    if not pod:
        return True
    try:
        kube.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}",
            body={"metadata": {"labels": {ROLE_LABEL: role}}},
            content_type="application/merge-patch+json",
            timeout=5,
        )
    except Exception as error:
        log.warning("labelling pod %s/%s %s: %s", namespace, pod, role, _short(error))
        return False
    return True


# One thread, so the PATCHes land in the order they were asked for: a standby label still
# in flight when the replica starts leading cannot overwrite the active one.
_LABELLER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="role-label")


async def label_role(
    kube: kubeclient.Kube, namespace: str, pod: str, role: str, attempts: int = 6
) -> bool:
    """``set_role_label`` until it sticks: one failed PATCH (a busy API server) must not
    leave a leader labelled standby for its whole reign. Backs off 1, 2, 4, 8, 8 s."""
    loop = asyncio.get_running_loop()
    for attempt in range(attempts):
        if await loop.run_in_executor(_LABELLER, set_role_label, kube, namespace, pod, role):
            return True
        if attempt + 1 < attempts:
            await asyncio.sleep(min(2.0**attempt, 8.0))
    return False


def _short(error: Exception) -> str:
    if isinstance(error, kubeclient.ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"[:300]
