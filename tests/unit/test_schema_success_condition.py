"""The CRD pattern of ``successCondition`` admits exactly what the analysis can parse.

``toque.reconcile.analysis.satisfies`` raises on a condition it cannot parse, and an analysis
that raises is retried for ever; so every string the schema admits must parse, and every
string the parser refuses must be refused at ``kubectl apply``. The pattern runs here in
pydantic's engine (Rust ``regex``); the corpus runs it in the API server's (RE2).
"""

from __future__ import annotations

import itertools
import random

import pydantic
import pytest

from toque.api import modelversion as mv
from toque.reconcile import analysis

OPS = ["<", "<=", ">", ">=", "==", "!=", "=", "=<", "<>", "!", "=>", ""]
NUMBERS = [
    "0", "1", "0.05", ".5", "5.", "-1", "-.5", "-5.", "1e3", "1e-3", "1.5e-3", "-2e10", "1.e5",
    "1.2.3", ".", "..", "-", "-.", "1e", "e5", ".e5", "1E5", "1e+3", "+1", "+.5e-2", "1_000",
    "0x1", "--1", "+-1", "1e--3", "1e3.5",
    "inf", "nan", "1,5", "1 000", "5%", "\uff11",
]  # fmt: skip
LEFT = ["result", "Result", "value", "results", "result()", ""]
SPACES = ["", " ", "  ", "\t"]
ODD_SPACES = ["\n", "\r", "\f", "\v", "\u00a0", "\u2003"]
TOKENS = [*OPS, *NUMBERS, *LEFT, *SPACES, *ODD_SPACES, "&&", "and", "e", "-", ".", "0", "9"]


def admitted(condition: str) -> bool:
    """Whether the CRD pattern (through the pydantic model) lets ``condition`` in."""
    try:
        mv.PrometheusMetric(name="m", query="q", success_condition=condition)
    except pydantic.ValidationError:
        return False
    return True


def parses(condition: str) -> bool:
    try:
        analysis.satisfies(condition, 0.5)
    except ValueError:
        return False
    return True


def structured() -> list[str]:
    """Every left side, operator and number, with plain spacing (the shapes users write)."""
    out = []
    for left, op, number in itertools.product(LEFT, OPS, NUMBERS):
        for a, b in (("", ""), (" ", " "), ("\t", ""), ("  ", "\t")):
            out.append(f"{left}{a}{op}{b}{number}")
    out += [f" {s} " for s in out[:500]] + [f"{s}\n" for s in out[:500]]
    return out


def fuzzed(count: int = 20000) -> list[str]:
    rng = random.Random(20240607)
    return ["".join(rng.choices(TOKENS, k=rng.randint(1, 7))) for _ in range(count)]


CASES = structured() + fuzzed()


def test_the_cases_cover_both_sides() -> None:
    accepted = sum(map(parses, CASES))
    assert 500 < accepted < len(CASES) - 500


@pytest.mark.parametrize(
    "condition",
    ["result < 0.05", "result>=1e-3", "result != -1", "result == .5", "result <= 2.", "result>-3"],
)
def test_usual_conditions_are_admitted(condition: str) -> None:
    assert admitted(condition) and parses(condition)


@pytest.mark.parametrize(
    "condition", ["result < 1.2.3", "result < .", "result <> 1", "result < 1e", "value < 1"]
)
def test_unparsable_conditions_are_refused(condition: str) -> None:
    assert not parses(condition)
    assert not admitted(condition)


def test_every_admitted_condition_parses() -> None:
    bad = [c for c in CASES if admitted(c) and not parses(c)]
    assert not bad, bad[:20]


def test_every_condition_the_parser_refuses_is_refused() -> None:
    bad = [c for c in CASES if not parses(c) and admitted(c)]
    assert not bad, bad[:20]


def test_the_pattern_is_exactly_the_parser_for_spaces_and_tabs() -> None:
    """Beyond spaces and tabs (newlines, Unicode spaces) the pattern is stricter on purpose:
    RE2, Rust and Python disagree on what ``\\s`` is."""
    plain = [c for c in CASES if not any(s in c for s in ODD_SPACES)]
    differ = [c for c in plain if admitted(c) != parses(c)]
    assert not differ, differ[:20]
