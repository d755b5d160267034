"""``metav1.Condition``-shaped conditions and the pure helper that sets them.

``set_condition`` follows apimachinery's ``SetStatusCondition``: ``lastTransitionTime``
moves only when the status flips. Used by the decide functions in ``toque.reconcile``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pydantic

from toque.api import schema

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(schema.KubeModel):
    """One observation of the resource's state, as ``metav1.Condition``."""

    type: str = pydantic.Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
        description="Type of condition in CamelCase.",
    )
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = pydantic.Field(
        default="", max_length=32768, description="Human-readable details."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="metadata.generation this condition was set from."
    )
    last_transition_time: dt.datetime = pydantic.Field(description="When the status last changed.")


def find(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of ``type_``, or None."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """A new list with ``type_`` set; the transition time is kept when status is unchanged."""
    old = find(conditions, type_)
    transition = old.last_transition_time if old and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        observed_generation=generation,
        last_transition_time=transition,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(new)
    return sorted(out, key=lambda c: c.type)


def find_all(status: dict[str, object]) -> list[Condition]:
    """Conditions parsed from a raw status dict (unknown shapes are skipped)."""
    raw = status.get("conditions")
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw:
        try:
            out.append(Condition.model_validate(item))
        except pydantic.ValidationError:
            continue
    return out
