"""The edges between a typed status model and the JSON of a status merge patch. Pure.

The decide functions work on the ``toque.api`` status models; the handlers read and write
dicts. ``parse`` tolerates what an older operator (or a hand edit) left in a status: unknown
keys are ignored, a field that no longer validates is dropped rather than failing the cycle.
``dump`` sends back every field the status held or the decision set, and a field set to
None as JSON null, which a merge patch (``clients.kube.patch_status``) reads as "remove".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from toque.api import conditions as cond
from toque.api import schema

M = TypeVar("M", bound=schema.KubeModel)


def parse(model: type[M], raw: Mapping[str, Any] | None) -> M:
    """The status model of an observed status; unknown keys and invalid fields left out."""
    data: dict[str, Any] = dict(raw or {})
    if "conditions" in data:
        # One malformed condition must not cost the others (as ``cond.find_all``).
        data["conditions"] = cond.find_all(data)
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data, extra="ignore")
        except pydantic.ValidationError as error:
            bad = {str(e["loc"][0]) for e in error.errors() if e["loc"]} & data.keys()
            if not bad:
                break
            for key in bad:
                del data[key]
    return model()


def dump(model: schema.KubeModel) -> dict[str, Any]:
    """The merge-patch body of a status: camelCase keys, RFC 3339 times, every field that
    was read or set (None as null, so a merge patch clears it), untouched defaults left out.
    """
    return model.model_dump(by_alias=True, mode="json", exclude_unset=True)


def changes(patch: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether a merge patch would change ``current`` (null on an absent key changes nothing)."""
    current = current or {}
    for key, value in patch.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if changes(value, old):
                return True
        elif isinstance(value, Mapping):
            if old is not None or _creates(value):
                return True
        elif value != old:
            return True
    return False


def _creates(value: Mapping[str, Any]) -> bool:
    """Whether a merge patch of ``value`` onto nothing would create anything."""
    return any(
        v is not None and (not isinstance(v, Mapping) or _creates(v)) for v in value.values()
    )


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A status time as an aware datetime (a time written without an offset is UTC)."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def parse_time(value: object) -> dt.datetime | None:
    """An RFC 3339 time from an observed object (a Job's status), or None."""
    if isinstance(value, dt.datetime):
        return utc(value)
    if not value:
        return None
    try:
        return utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None
