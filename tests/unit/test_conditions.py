"""Conditions behave like apimachinery's SetStatusCondition."""

from __future__ import annotations

import datetime as dt

from toque.api import conditions as cond

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_transition_time_moves_only_when_status_flips() -> None:
    first = cond.set_condition([], "Running", "True", "PodRunning", "a", 1, T0)
    same = cond.set_condition(first, "Running", "True", "PodRunning", "b", 2, T1)
    flipped = cond.set_condition(same, "Running", "False", "Completed", "c", 2, T1)
    assert same[0].last_transition_time == T0
    assert same[0].message == "b" and same[0].observed_generation == 2
    assert flipped[0].last_transition_time == T1


def test_conditions_are_keyed_by_type() -> None:
    out = cond.set_condition([], "B", "True", "R", "", 1, T0)
    out = cond.set_condition(out, "A", "False", "R", "", 1, T0)
    out = cond.set_condition(out, "B", "False", "R", "", 1, T0)
    assert [c.type for c in out] == ["A", "B"]


def test_find_all_skips_garbage() -> None:
    good = cond.set_condition([], "A", "True", "R", "", 1, T0)[0].to_kube()
    assert [c.type for c in cond.find_all({"conditions": [good, {"type": 3}]})] == ["A"]
    assert cond.find_all({"conditions": "nope"}) == []
