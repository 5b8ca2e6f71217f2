"""What the GPU check's parts share: a timing loop and the row that says what could not be
measured."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(run: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> list[float]:
    """Milliseconds of `repeats` calls of `run` after one warm-up call."""
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times


def error_row(label: str, engine: str, error: BaseException) -> dict[str, Any]:
    """A row that says what could not be measured, and why."""
    return {
        "model": label,
        "engine": engine,
        "batch": None,
        "error": f"{type(error).__name__}: {error}",
    }
