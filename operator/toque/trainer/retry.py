"""Retrying calls to MinIO and MLflow while they are down, within a time budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DependencyDownError(Exception):
    """A dependency stayed unreachable for the whole budget."""


def with_backoff(
    call: Callable[[], T],
    what: str,
    is_transient: Callable[[BaseException], bool],
    budget_s: float,
    logger: logging.Logger,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()``, retried with exponential backoff (1 s → 30 s) on transient errors."""
    deadline = clock() + budget_s
    delay = 1.0
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if clock() + delay > deadline:
                raise DependencyDownError(f"{what}: {error}") from error
            logger.warning("%s failed (%s); retrying in %.0fs", what, error, delay)
            sleep(delay)
            delay = min(delay * 2, 30.0)
