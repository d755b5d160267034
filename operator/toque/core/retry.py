"""Retrying calls to dependencies (MinIO, MLflow) while they are down, within a time budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from toque.core import redact, transient

T = TypeVar("T")
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0


class DependencyDownError(Exception):
    """A dependency stayed unreachable for the whole budget (the message is redacted)."""

    transient = True


def with_backoff(
    call: Callable[[], T],
    what: str,
    budget_s: float,
    logger: logging.Logger,
    *,
    is_transient: Callable[[BaseException], bool] = transient.is_transient,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, retried with exponential backoff (1 s → 30 s) on transient errors.

    A permanent error is raised as it is; when the next wait would pass the budget, a
    ``DependencyDownError`` naming ``what`` and the last error (credentials redacted) is.
    """
    deadline = clock() + budget_s
    delay = FIRST_DELAY_S
    while True:
        try:
            return call()
        except Exception as error:
            # An inner retry loop already spent its budget: do not multiply it.
            if isinstance(error, DependencyDownError) or not is_transient(error):
                raise
            detail = redact.redact(str(error))
            if clock() + delay > deadline:
                raise DependencyDownError(f"{what}: {detail}") from error
            logger.warning("%s failed (%s); retrying in %.0fs", what, detail, delay)
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
