"""Decode lanes: a batch split into parts that run side by side on one set of sessions.

ONNX Runtime's intra-op pool splits each node over its threads. At a batch of 32 on two
cores most of a bart-base decode step is small nodes (adds, reshapes, normalisation,
quantisation), for which the pool's hand-offs likely cost about as much as the work. With
`lanes` > 1 the sessions get `threads / lanes` intra-op threads each and a batch runs as
`lanes` parts at once, one per core, each on a thread of its own calling the same sessions
(an `InferenceSession` may be run from several threads; the weights stay one copy). On the
2-core machine two lanes of one thread gave 1.19-1.32x the throughput of one lane of two
threads at a static batch of 32 (bart-base shape, int8 `per-token`, two `make bench-peers`
runs), and a single request took 1.10-1.15x as long, because it runs on one core; in the
running decode with 16 clients they were 0.91-0.93x. Each lane reads every weight at
every step; on fp32 graphs lanes were slower (0.77-0.80x), that traffic being the likely
reason. See README *Decode lanes*. CPU only: a GPU session is not split. The lanes' threads
end when their `Lanes` is garbage-collected (`ThreadPoolExecutor` does that itself), e.g.
when a hot swap lets the old explainer go.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def threads_per_lane(intra_op_threads: int, lanes: int) -> int:
    """Intra-op threads for each session when `lanes` parts share the threads asked for
    (0: every core, as ONNX Runtime's default would take)."""
    total = intra_op_threads or os.cpu_count() or 1
    return max(1, total // lanes) if lanes > 1 else intra_op_threads


def spread(sizes: Sequence[int], count: int) -> list[int]:
    """Which lane each of `count` new rows goes to: the lane with the fewest rows, in turn
    (`sizes`: rows each lane has now)."""
    load = list(sizes)
    chosen = []
    for _ in range(count):
        lane = min(range(len(load)), key=load.__getitem__)
        chosen.append(lane)
        load[lane] += 1
    return chosen


class Lanes:
    """`count` lanes and the threads that run them (none for one lane: the caller's thread)."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"lanes must be at least 1, not {count}")
        self.count = count
        self._pool = (
            ThreadPoolExecutor(count, thread_name_prefix="prism-lane") if count > 1 else None
        )

    def run(self, calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
        """Every call's result, or the exception it raised (one part failing leaves the
        others' results alone); all at once on the lanes' threads."""
        if self._pool is None or len(calls) < 2:
            return [_outcome(call) for call in calls]
        futures = [self._pool.submit(_outcome, call) for call in calls]
        return [future.result() for future in futures]


def _outcome(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except Exception as exc:  # handed to the caller, which fails only that part
        return exc
