"""What the GPU check's parts share: a timing loop and the row that says what could not be
measured."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


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


def timing_row(
    label: str, engine: str, batch: int, times: list[float], **extra: Any
) -> dict[str, Any]:
    """One measured row of the report: p50 and p95 of `times` (ms), and what else it carries."""
    return {
        "model": label,
        "engine": engine,
        "batch": batch,
        "p50_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        **extra,
    }
