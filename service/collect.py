"""The batcher's pure parts: collecting a batch off the queue, splitting it into groups,
and the measured service rate that admission control reads.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def collect_batch(
    source: queue.Queue[T],
    *,
    max_size: int,
    max_wait_s: float,
    first_timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    wait_for_more: Callable[[T], bool] = lambda first: True,
) -> list[T]:
    """Wait up to `first_timeout_s` for one item, then collect until `max_size` items or
    `max_wait_s` after the first; whatever is already queued when the wait ends still joins.
    When `wait_for_more(first)` is False there is no wait: only what is already queued joins
    (a request that later arrivals can join between decode steps need not wait for them)."""
    try:
        first = source.get(timeout=first_timeout_s)
    except queue.Empty:
        return []
    batch = [first]
    until = clock() + (max_wait_s if wait_for_more(first) else 0.0)
    while len(batch) < max_size:
        remaining = until - clock()
        try:
            batch.append(source.get(timeout=remaining) if remaining > 0 else source.get_nowait())
        except queue.Empty:
            break
    return batch


def group_by(jobs: Sequence[T], key: Callable[[T], object]) -> list[list[T]]:
    """Split a batch into groups of equal `key`, keeping first-seen order: each group is its
    own `generate` call, so a failure in one never fails the other."""
    groups: dict[object, list[T]] = {}
    for job in jobs:
        groups.setdefault(key(job), []).append(job)
    return list(groups.values())


class ServiceRate:
    """Seconds a batch takes and seconds per request (batches amortise), as moving averages."""

    def __init__(self, batch_s: float = 0.05, per_request_s: float = 0.05) -> None:
        self.batch_s = batch_s
        self.per_request_s = per_request_s

    def record(self, seconds: float, size: int) -> None:
        self.batch_s = 0.8 * self.batch_s + 0.2 * seconds
        self.per_request_s = 0.8 * self.per_request_s + 0.2 * seconds / max(size, 1)

    def record_rows(self, latency_s: float, busy_s: float, rows: int) -> None:
        """Iteration-level batching: `rows` ended after `latency_s` each (on average) in the
        running batch, and the decoder was busy `busy_s` since rows last ended."""
        self.batch_s = 0.8 * self.batch_s + 0.2 * latency_s
        self.per_request_s = 0.8 * self.per_request_s + 0.2 * busy_s / max(rows, 1)


def drain(source: queue.Queue[T], most: int) -> list[T]:
    """Whatever is queued now, up to `most` items, without waiting."""
    taken: list[T] = []
    while len(taken) < most:
        try:
            taken.append(source.get_nowait())
        except queue.Empty:
            break
    return taken
