"""Thread-pool and progress helpers shared by uploads and downloads.

Threads rather than processes: the work is hashing (hashlib releases the GIL on big
buffers) or waiting on S3. Used by ``toque.data.transfer``, ``multipart`` and ``fetch``.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import tqdm

T = TypeVar("T")
R = TypeVar("R")


class Progress:
    """A byte counter on stderr shared by worker threads; silent unless ``enabled``."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._bar = tqdm.tqdm(
            total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
            file=sys.stderr, disable=not enabled, leave=False, dynamic_ncols=True,
        )  # fmt: skip

    def __call__(self, count: int) -> None:
        with self._lock:
            self._bar.update(count)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def silent() -> Progress:
    return Progress(0, "", enabled=False)


def run_all(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``fn`` over ``items`` in a pool; on the first failure cancel the rest and re-raise."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
    finally:
        # After a failure nobody waits on the queued work: drop it instead of running it.
        pool.shutdown(wait=True, cancel_futures=True)
