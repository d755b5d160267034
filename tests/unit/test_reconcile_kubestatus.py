"""The edges between the typed status models and the JSON of a status merge patch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from toque.api import modelversion as mv
from toque.api import trainingjob as tj
from toque.reconcile import kubestatus

CONDITION = {
    "type": "Registered",
    "status": "True",
    "reason": "Registered",
    "message": "ok",
    "lastTransitionTime": "2026-11-27T12:00:00Z",
}


def test_parse_reads_camel_case_and_times() -> None:
    status = kubestatus.parse(
        mv.ModelVersionStatus,
        {
            "phase": "Promoted",
            "registry": {"name": "ns.iris", "version": "3"},
            "promotedAt": "2026-11-27T09:00:00Z",
            "conditions": [CONDITION],
        },
    )
    assert status.phase == "Promoted"
    assert status.registry is not None and status.registry.version == "3"
    assert status.promoted_at == dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC)
    assert [c.type for c in status.conditions] == ["Registered"]


def test_parse_ignores_unknown_keys_at_any_depth() -> None:
    status = kubestatus.parse(
        mv.ModelVersionStatus,
        {"phase": "Pending", "old": 1, "registry": {"version": "1", "legacy": True}},
    )
    assert status.phase == "Pending"
    assert status.registry == mv.RegistryStatus(version="1")
    assert "old" not in kubestatus.dump(status)


def test_parse_drops_a_field_that_no_longer_validates_and_keeps_the_rest() -> None:
    status = kubestatus.parse(
        tj.TrainingJobStatus,
        {"phase": "Exploded", "attempts": {"n": 2}, "jobName": "demo", "mlflowRunId": "r1"},
    )
    assert status.phase is None and status.attempts is None
    assert (status.job_name, status.mlflow_run_id) == ("demo", "r1")
    assert kubestatus.dump(status) == {"jobName": "demo", "mlflowRunId": "r1"}


def test_parse_keeps_the_conditions_that_parse() -> None:
    status = kubestatus.parse(
        tj.TrainingJobStatus, {"conditions": [CONDITION, {"type": "Broken"}, "nonsense"]}
    )
    assert [c.type for c in status.conditions] == ["Registered"]


@pytest.mark.parametrize("raw", [None, {}])
def test_parse_of_no_status_is_an_empty_status(raw: dict[str, Any] | None) -> None:
    assert kubestatus.dump(kubestatus.parse(mv.ModelVersionStatus, raw)) == {}


def test_dump_sends_null_for_fields_set_to_none_and_omits_untouched_ones() -> None:
    status = kubestatus.parse(
        mv.ModelVersionStatus,
        {"phase": "Promoted", "registry": {"name": "n", "version": "1", "alias": "champion"}},
    )
    assert status.registry is not None
    status.registry.alias = None
    status.stable_version = None
    status.step_started_at = dt.datetime(2026, 11, 27, 12, 0, 1, 500000, tzinfo=dt.UTC)
    assert kubestatus.dump(status) == {
        "phase": "Promoted",
        "registry": {"name": "n", "version": "1", "alias": None},
        "stableVersion": None,
        "stepStartedAt": "2026-11-27T12:00:01.500000Z",
    }


def test_a_merge_patch_that_changes_nothing_is_recognised() -> None:
    current = {"phase": "Promoted", "registry": {"name": "n", "version": "1"}, "extra": 1}
    assert not kubestatus.changes({}, current)
    assert not kubestatus.changes({"phase": "Promoted"}, current)
    assert not kubestatus.changes({"canaryWeight": None}, current)  # null on absent: no-op
    assert not kubestatus.changes({"registry": {"alias": None, "version": "1"}}, current)
    assert not kubestatus.changes({"new": {"a": None}}, current)
    assert kubestatus.changes({"phase": "Superseded"}, current)
    assert kubestatus.changes({"registry": {"alias": "champion"}}, current)
    assert kubestatus.changes({"registry": None}, current)
    assert kubestatus.changes({"new": {"a": 1}}, current)
    assert kubestatus.changes({"extra": None}, current)
    assert kubestatus.changes({"phase": "Pending"}, None)


def test_times_from_observed_objects() -> None:
    utc = dt.datetime(2026, 11, 27, 12, 0, 1, tzinfo=dt.UTC)
    assert kubestatus.parse_time("2026-11-27T12:00:01Z") == utc
    assert kubestatus.parse_time("2026-11-27T12:00:01") == utc  # no offset: UTC
    assert kubestatus.parse_time(utc) == utc
    assert kubestatus.parse_time(None) is None
    assert kubestatus.parse_time("yesterday") is None
