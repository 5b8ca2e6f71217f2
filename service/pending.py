"""What the batcher's two paths share: a queued request, its result, the observer they report
to, and settling a request's future on its own event loop from the worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from explain.explainer import BatchGeneration, BatchTimings, Generation, Prepared
from service.errors import BatchFailedError, ServiceError

logger = logging.getLogger(__name__)


class BatchGenerator(Protocol):
    """The inference stage: one call per batch, candidates back in order."""

    def generate(self, batch: Sequence[Prepared]) -> BatchGeneration: ...


class BatchObserver(Protocol):
    """Where the batcher reports what it does (`service.metrics.Metrics` is one)."""

    def queue_depth(self, depth: int) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def batch(self, size: int, timings: BatchTimings) -> None: ...

    def joined(self, size: int, encode_s: float) -> None: ...

    def step(self, rows: int, seconds: float) -> None: ...

    def reran(self, steps: int) -> None: ...

    def row_ended(self, seconds: float) -> None: ...

    def rows_abandoned(self, rows: int) -> None: ...

    def deadline_exceeded(self) -> None: ...

    def expired_unrun(self) -> None: ...

    def rejected(self, reason: str) -> None: ...

    def probe(self, ok: bool) -> None: ...


class Uncounted:
    """Where `submit` reports optional work: nowhere (its caller counts the outcome)."""

    def rejected(self, reason: str) -> None:
        pass

    def deadline_exceeded(self) -> None:
        pass


@dataclass(frozen=True)
class Generated:
    """One request's candidates and where its time went."""

    generation: Generation
    queue_s: float
    inference_s: float


@dataclass(eq=False)
class Pending:
    prepared: Prepared
    engine: BatchGenerator
    deadline: float
    enqueued: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Generated]


def resolve(
    pending: Pending, *, result: Generated | None = None, error: ServiceError | None = None
) -> None:
    """Settle `pending` on its own event loop (futures are not thread-safe)."""

    def settle() -> None:
        if pending.future.done():
            return
        if result is not None:
            pending.future.set_result(result)
        else:
            pending.future.set_exception(error or BatchFailedError("the request failed"))

    # RuntimeError: the request's loop has closed, so nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        pending.loop.call_soon_threadsafe(settle)


def notify(hook: Callable[..., None], *args: object) -> None:
    """Call an observer hook. The observer is foreign code: a failing metric must not fail a
    request or the worker."""
    try:
        hook(*args)
    except Exception:
        logger.warning("batch observer %s failed", getattr(hook, "__name__", hook), exc_info=True)
