"""The Lease election: the pure decision, and two electors sharing a Lease store that keeps
the API server's one rule that matters here (a write naming a stale resourceVersion gets 409
Conflict)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import os
import signal
import time
from typing import Any

import pytest

from toque.clients import kube as kubeclient
from toque.handlers import election, replica
from toque.reconcile import leaderlease as ll

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def record(holder: str = "a", duration: float = 15, transitions: int = 0) -> ll.Record:
    return ll.Record(holder, duration, NOW, NOW, transitions, "7")


def test_no_lease_is_created() -> None:
    assert ll.decide(None, "a", 0, 15) is ll.Action.CREATE


def test_own_lease_is_renewed_however_old() -> None:
    assert ll.decide(record("a"), "a", 999, 15) is ll.Action.RENEW


def test_released_lease_is_taken_at_once() -> None:
    assert ll.decide(record(""), "b", 0, 15) is ll.Action.ACQUIRE


def test_live_lease_of_another_replica_is_waited_for() -> None:
    assert ll.decide(record("a"), "b", 14.9, 15) is ll.Action.WAIT


def test_lease_unchanged_for_its_duration_is_taken_over() -> None:
    assert ll.decide(record("a"), "b", 15.0, 15) is ll.Action.ACQUIRE


def test_the_leases_own_duration_wins_over_the_default() -> None:
    assert ll.decide(record("a", duration=60), "b", 30, 15) is ll.Action.WAIT
    assert ll.decide(record("a", duration=0), "b", 16, 15) is ll.Action.ACQUIRE


def test_takeover_counts_a_transition_and_renewal_keeps_acquire_time() -> None:
    old = record("a", transitions=3)
    later = NOW + dt.timedelta(seconds=20)
    taken = ll.lease_body(ll.Action.ACQUIRE, old, "b", "l", "ns", 15, later)["spec"]
    assert taken["holderIdentity"] == "b" and taken["leaseTransitions"] == 4
    assert taken["acquireTime"] == taken["renewTime"]
    renewed = ll.lease_body(ll.Action.RENEW, old, "a", "l", "ns", 15, later)["spec"]
    assert renewed["leaseTransitions"] == 3
    assert renewed["acquireTime"] == "2026-12-01T12:00:00.000000Z"
    assert renewed["renewTime"] == "2026-12-01T12:00:20.000000Z"


def test_write_names_the_resource_version_it_read() -> None:
    body = ll.lease_body(ll.Action.RENEW, record("a"), "a", "l", "ns", 15, NOW)
    assert body["metadata"]["resourceVersion"] == "7"


def test_record_round_trips_through_a_lease_body() -> None:
    body = ll.lease_body(ll.Action.CREATE, None, "a", "l", "ns", 15, NOW)
    body["metadata"]["resourceVersion"] = "1"
    parsed = ll.Record.from_lease(body)
    assert (parsed.holder, parsed.duration, parsed.renewed, parsed.transitions) == (
        "a",
        15.0,
        NOW,
        0,
    )


@pytest.mark.parametrize(
    ("timing", "problem"),
    [
        (ll.Timing(15, 10, 0), "retry period must be positive"),
        (ll.Timing(15, 2, 2), "renew deadline must be longer than the retry period"),
        (ll.Timing(10, 10, 2), "lease duration must be longer than the renew deadline"),
    ],
)
def test_timing_that_lets_two_replicas_lead_is_refused(timing: ll.Timing, problem: str) -> None:
    assert any(problem in p for p in timing.problems())


def test_default_timing_is_client_gos_and_valid() -> None:
    assert ll.Timing() == ll.Timing(15.0, 10.0, 2.0) and ll.Timing().problems() == []


class LeaseStore:
    """The Lease endpoints of an API server: optimistic concurrency on resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.versions = itertools.count(1)
        self.down = False
        self.labels: dict[str, str] = {}

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if self.down:
            raise OSError("connection refused")
        if "/pods/" in path:
            self.labels[path.rpartition("/")[2]] = body["metadata"]["labels"][election.ROLE_LABEL]
            return {}
        if method == "GET":
            if self.lease is None:
                raise kubeclient.ApiException(status=404, reason="Not Found")
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise kubeclient.ApiException(status=409, reason="AlreadyExists")
        elif self.lease is None or (
            body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]
        ):
            raise kubeclient.ApiException(status=409, reason="Conflict")
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(next(self.versions))
        self.lease = stored
        return copy.deepcopy(stored)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def electors(store: LeaseStore, clock: Clock) -> tuple[election.Elector, election.Elector]:
    def make(identity: str) -> election.Elector:
        return election.Elector(
            kube=store,  # type: ignore[arg-type]
            name="toque-operator",
            namespace="toque-system",
            identity=identity,
            clock=clock,
        )

    return make("a"), make("b")


def test_first_replica_creates_the_lease_and_the_second_stands_by() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = electors(store, clock)
    assert a.look() == election.Outcome(True, "a")
    assert b.look() == election.Outcome(False, "a")
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


def test_standby_takes_over_only_after_the_holder_stopped_renewing_for_the_duration() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = electors(store, clock)
    a.look()
    for _ in range(10):  # a renews every 2 s: b never takes over
        clock.now += 2
        assert a.look().holding
        assert not b.look().holding
    # a dies after its last renewal, which b saw at once: b's clock for that record runs
    # from that look, on b's own clock.
    clock.now += 2
    assert not b.look().holding
    clock.now += 12.9
    assert not b.look().holding
    clock.now += 0.2
    assert b.look() == election.Outcome(True, "b")
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 1


def test_released_lease_is_taken_at_the_standbys_next_look() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = electors(store, clock)
    a.look()
    b.look()
    a.release()
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == ""
    assert b.look().holding


def test_release_by_a_replica_that_no_longer_holds_the_lease_changes_nothing() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = electors(store, clock)
    a.look()
    b.release()
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


def test_of_two_replicas_racing_for_an_expired_lease_exactly_one_wins() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = electors(store, clock)
    old = election.Elector(store, "toque-operator", "toque-system", "old", clock=clock)  # type: ignore[arg-type]
    old.look()
    a.look()
    b.look()
    clock.now += 16
    # Both read the same expired record; a writes first, b's write names a stale version.
    real = store.request
    reads: list[Any] = []

    def stale_for_b(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "GET" and reads:
            return copy.deepcopy(reads[0])
        result = real(method, path, body, **kw)
        if method == "GET":
            reads.append(result)
        return result

    store.request = stale_for_b  # type: ignore[method-assign]
    assert a.look().holding
    assert not b.look().holding
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "a"


def test_unreachable_api_server_is_no_leadership_and_no_holder() -> None:
    store, clock = LeaseStore(), Clock()
    a, _ = electors(store, clock)
    store.down = True
    assert a.look() == election.Outcome(False, None)
    assert a.last_answer is None


def test_leader_that_cannot_renew_gives_up_within_the_renew_deadline() -> None:
    store = LeaseStore()
    timing = ll.Timing(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)
    a = election.Elector(store, "l", "ns", "a", timing=timing)  # type: ignore[arg-type]
    asyncio.run(a.acquire())
    store.down = True
    reason = asyncio.run(a.hold())
    assert "no renewal" in reason


def test_leader_whose_lease_was_taken_steps_down_at_its_next_look() -> None:
    store = LeaseStore()
    timing = ll.Timing(lease_duration=0.6, renew_deadline=0.4, retry_period=0.05)
    a = election.Elector(store, "l", "ns", "a", timing=timing)  # type: ignore[arg-type]
    asyncio.run(a.acquire())
    assert store.lease is not None
    store.lease["spec"]["holderIdentity"] = "b"
    store.lease["metadata"]["resourceVersion"] = "99"
    assert "'b' holds the Lease" in asyncio.run(a.hold())


def test_role_label_is_patched_on_the_replicas_own_pod() -> None:
    store = LeaseStore()
    election.set_role_label(store, "toque-system", "toque-operator-abc", "active")  # type: ignore[arg-type]
    assert store.labels == {"toque-operator-abc": "active"}


async def _lead_then_terminate(
    run_operator: Any, exits: list[int], store: LeaseStore, grace: float
) -> tuple[int, float]:
    elector, _ = electors(store, Clock())
    ready = asyncio.Event()

    async def operator(kopf_ready: asyncio.Event, stop: asyncio.Event) -> object:
        ready.set()
        return await run_operator(kopf_ready, stop)

    running = asyncio.create_task(
        replica.run(
            elector, "", operator, "127.0.0.1", 0, stop_grace_s=grace, exit_now=exits.append
        )
    )
    await asyncio.wait_for(ready.wait(), 5)
    await asyncio.sleep(0.1)  # the replica takes the signal back once kopf is ready
    told = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(running, 5)
    return code, time.monotonic() - told


def test_a_leader_whose_operator_ignores_sigterm_releases_the_lease_after_the_grace() -> None:
    store, exits = LeaseStore(), []

    async def stubborn(ready: asyncio.Event, stop: asyncio.Event) -> object:
        ready.set()
        await asyncio.Event().wait()  # a handler that never lets kopf stop
        return None

    _, took = asyncio.run(_lead_then_terminate(stubborn, exits, store, grace=0.3))
    assert exits == [0]
    assert 0.3 <= took < 3.0
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == ""


def test_a_leader_whose_operator_stops_on_sigterm_releases_the_lease_and_returns() -> None:
    store, exits = LeaseStore(), []
    stopped = []

    async def obedient(ready: asyncio.Event, stop: asyncio.Event) -> object:
        ready.set()
        await stop.wait()  # kopf's stop flag, set by the replica on SIGTERM
        stopped.append(True)
        return None

    code, took = asyncio.run(_lead_then_terminate(obedient, exits, store, grace=10.0))
    assert code == 0 and exits == [] and stopped == [True]
    assert took < 5.0  # it did not wait the grace out
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == ""


def test_a_role_label_that_fails_once_is_set_on_a_later_attempt() -> None:
    store = LeaseStore()
    failures = [OSError("the API server is busy")]
    request = store.request

    def flaky(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if "/pods/" in path and failures:
            raise failures.pop()
        return request(method, path, body, **kwargs)

    store.request = flaky  # type: ignore[method-assign]
    labelled = asyncio.run(
        election.label_role(store, "toque-system", "toque-operator-abc", "active")  # type: ignore[arg-type]
    )
    assert labelled and store.labels == {"toque-operator-abc": "active"} and not failures


def test_a_role_label_gives_up_after_its_attempts_without_raising() -> None:
    store = LeaseStore()
    store.down = True
    labelled = asyncio.run(
        election.label_role(store, "toque-system", "p", "active", attempts=2)  # type: ignore[arg-type]
    )
    assert not labelled and store.labels == {}
