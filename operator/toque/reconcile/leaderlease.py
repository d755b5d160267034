"""Leader election over a ``coordination.k8s.io/v1`` Lease, decided purely: what a replica
should do given the Lease it read. ``toque.handlers.election`` does the reading and writing.

The rules are client-go's ``leaderelection`` package (what kube-controller-manager, the
scheduler and every controller-runtime operator run), so a platform team reads our Lease as
they read theirs:

- the holder renews ``renewTime`` every ``retry_period``; a holder that could not renew for
  ``renew_deadline`` gives up (the process exits) before its Lease runs out, so two replicas
  never both believe they lead;
- a candidate takes the Lease over when it is free (no Lease, an empty holder: released on a
  clean shutdown) or when its record has not changed for ``leaseDurationSeconds`` **as timed
  on the candidate's own monotonic clock** from the moment it first saw that record: the two
  replicas' wall clocks never have to agree;
- every write carries the ``resourceVersion`` it read, so of two candidates racing for an
  expired Lease the API server lets exactly one win (the other gets 409 Conflict).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

LEASE_API = "coordination.k8s.io/v1"


@dataclasses.dataclass(frozen=True)
class Timing:
    """client-go's defaults; ``renew_deadline`` < ``lease_duration`` is what makes a holder
    step down before anyone may take over."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        found = []
        if self.retry_period <= 0:
            found.append("the retry period must be positive")
        if self.renew_deadline <= self.retry_period:
            found.append("the renew deadline must be longer than the retry period")
        if self.lease_duration <= self.renew_deadline:
            found.append("the lease duration must be longer than the renew deadline")
        return found


@dataclasses.dataclass(frozen=True)
class Record:
    """The fields of a Lease's spec the election reads."""

    holder: str
    duration: float
    acquired: dt.datetime | None
    renewed: dt.datetime | None
    transitions: int
    resource_version: str

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or 0),
            acquired=_parse(spec.get("acquireTime")),
            renewed=_parse(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def fingerprint(self) -> tuple[str, dt.datetime | None, int]:
        """What changes whenever the holder writes: a candidate restarts its expiry clock
        when this changes."""
        return (self.holder, self.renewed, self.transitions)


class Action(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    ACQUIRE = "acquire"  # free or expired: take it over
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # another replica holds a live Lease


def decide(
    record: Record | None, identity: str, observed_for: float, default_duration: float
) -> Action:
    """What ``identity`` does about the Lease it just read. ``observed_for``: seconds, on
    this replica's monotonic clock, since it first saw ``record``'s current fingerprint."""
    if record is None:
        return Action.CREATE
    if record.holder == identity:
        return Action.RENEW
    if not record.holder:
        return Action.ACQUIRE
    duration = record.duration if record.duration > 0 else default_duration
    if observed_for < duration:
        return Action.WAIT
    return Action.ACQUIRE


def lease_body(
    action: Action,
    record: Record | None,
    identity: str,
    name: str,
    namespace: str,
    duration: float,
    now: dt.datetime,
) -> dict[str, Any]:
    """The Lease to write for ``action`` (CREATE, ACQUIRE or RENEW)."""
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration)),
        "renewTime": _format(now),
    }
    if action is Action.RENEW and record is not None:
        spec["acquireTime"] = _format(record.acquired or now)
        spec["leaseTransitions"] = record.transitions
    else:
        spec["acquireTime"] = _format(now)
        spec["leaseTransitions"] = (record.transitions + 1) if record is not None else 0
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record is not None:
        metadata["resourceVersion"] = record.resource_version
    return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": spec}


def released_body(record: Record, name: str, namespace: str, now: dt.datetime) -> dict[str, Any]:
    """The Lease given up on a clean shutdown: no holder, so a standby takes it at its next
    look instead of waiting out the duration (client-go's ``ReleaseOnCancel``)."""
    return {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": record.resource_version,
        },
        "spec": {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": _format(record.acquired or now),
            "renewTime": _format(now),
            "leaseTransitions": record.transitions,
        },
    }


def _format(moment: dt.datetime) -> str:
    # MicroTime: RFC 3339 with microseconds.
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
