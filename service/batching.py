"""Dynamic batching: many concurrent requests, one `generate` call per batch.

Prepared requests (`Explainer.prepare` ran for each on its own, outside this thread) go onto
a bounded, thread-safe queue, each with the explainer that prepared it (during a hot swap
two explainers serve side by side, and a request finishes on the version it started on).
One worker thread takes them off in batches (`collect_batch`), drops those that can no
longer finish by their deadline (never computing them), splits the rest by explainer and
beam width and calls the blocking `generate` once per group. With iteration-level batching
(`continuous`: `on`, or `auto` for bart-base-sized models) greedy requests instead join the
running decode between two steps and are answered the moment their row ends
(`service.running.RunningLane`); the beam second pass, and models whose graphs cannot take
joining rows, keep the static path. Each request's candidates are handed back to its own
event loop with `call_soon_threadsafe`, so the loop never blocks on inference; finishing
(slots, checks) happens per request again, in the caller.

The batcher also keeps what admission control and the probes need: a measured service rate
(seconds per request, amortised over batches), the expected wait of a new request, and the
runtime's health (`service.health.RuntimeHealth`: the watchdog clock, and self-probes that
bring a failing runtime back by themselves).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

from explain.explainer import Prepared
from service.collect import ServiceRate, collect_batch, drain, group_by
from service.errors import (
    BatchFailedError,
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
)
from service.health import RuntimeHealth
from service.pending import (
    BatchGenerator,
    BatchObserver,
    Generated,
    Pending,
    Uncounted,
    notify,
    resolve,
)
from service.running import RunningLane

__all__ = ["BatchGenerator", "BatchObserver", "DynamicBatcher", "Generated"]

logger = logging.getLogger(__name__)


class DynamicBatcher:
    """Coalesces concurrent `submit` calls into `generate` batches on one worker thread.

    `submit` fails fast: `NotReadyError` before `start()` or after `stop()`, `OverloadedError`
    (with a retry-after hint) when `max_queue` requests already wait. A request not done by
    its deadline gets `DeadlineExceededError`: still queued, it is dropped unrun (as is one
    that would not finish in time); running, its late result is discarded. An exception from
    `generate`, or a wrong number of outputs, fails that group's requests with
    `BatchFailedError`; the worker keeps going, and heals the runtime's health by probing.
    """

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        observer: BatchObserver,
        max_consecutive_failures: int = 3,
        poll_interval_s: float = 0.05,
        probe_backoff_s: tuple[float, float] = (0.5, 30.0),
        continuous: str = "auto",
    ) -> None:
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[Pending] = queue.Queue(maxsize=max_queue)
        self._observer = observer
        self._poll_s = poll_interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self.health = RuntimeHealth(
            max_failures=max_consecutive_failures,
            backoff_s=probe_backoff_s,
            on_probe=lambda ok: notify(observer.probe, ok),
        )
        self.rate = ServiceRate()
        self._lane = RunningLane(
            max_rows=max_batch_size,
            mode=continuous,
            observer=observer,
            health=self.health,
            rate=self.rate,
        )
        self._held: list[Pending] = []  # joinable requests waiting for a free row

    # --- state the probes and admission read -------------------------------------------

    @property
    def healthy(self) -> bool:
        """Taking requests, and the runtime has not failed `max_consecutive_failures` times
        in a row (request-level errors never count: they happen outside the batcher)."""
        return self.alive and self._accepting and self.health.healthy

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stuck_for(self) -> float:
        return self.health.stuck_for()

    def failing_for(self) -> float:
        return self.health.failing_for()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def running_rows(self) -> int:
        """Rows decoding in the running batch now (iteration-level batching)."""
        return self._lane.rows

    def expected_wait_s(self) -> float:
        """When a request queued now would be done: the rest of the running batch, the
        queue ahead of it and itself, at the measured service rate. With iteration-level
        batching a request joins at the next step while rows are free, so only the queue
        beyond the free rows waits, and then its own time in the batch."""
        if self._lane.rows:
            return self.expected_start_s() + self.rate.batch_s
        return self.expected_start_s() + self.rate.per_request_s

    def expected_start_s(self) -> float:
        """When a request queued now would start: `expected_wait_s` without its own time.
        Admission holds this to `max_queue_wait_s` and the finish to the deadline: a model
        whose one batch outlasts the queue-wait budget (bart-base on 2 CPU cores: 2.8 s a
        request) still admits what it can start in time."""
        if self._lane.rows:
            ahead = self._queue.qsize() + len(self._held) + 1 - self._lane.free
            return max(0, ahead) * self.rate.per_request_s
        busy = self.health.busy
        running = max(0.0, self.rate.batch_s - self.stuck_for()) if busy else 0.0
        return running + self._queue.qsize() * self.rate.per_request_s

    def set_probe(self, probe: Callable[[], None] | None) -> None:
        """What the worker runs to check a failing runtime (a small real request)."""
        self.health.probe = probe

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the batcher was already started")
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="prism-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, let the worker drain the queue for up to `timeout_s`, then fail
        whatever is still queued with `NotReadyError`."""
        self._accepting = False
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("batcher worker still busy after %.1fs; abandoning it", timeout_s)
        stopping = NotReadyError("the service is shutting down")
        if self._thread is None or not self._thread.is_alive():
            self._lane.fail_all(stopping)
        for pending in self._held:
            resolve(pending, error=stopping)
        self._held = []
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            resolve(pending, error=stopping)
        notify(self._observer.queue_depth, 0)

    async def submit(
        self,
        prepared: Prepared,
        deadline: float,
        engine: BatchGenerator,
        *,
        optional: bool = False,
    ) -> Generated:
        """Queue `prepared` for `engine` and wait for its candidates until `deadline`
        (`time.monotonic()`). `optional` work (a second pass, whose request is answered
        either way) is not counted as rejected or late: the caller counts its outcome."""
        observer: BatchObserver | Uncounted = Uncounted() if optional else self._observer
        if not self._accepting:
            notify(observer.rejected, "not_ready")
            raise NotReadyError("the service is not ready")
        now = time.monotonic()
        if now >= deadline:
            notify(observer.deadline_exceeded)
            raise DeadlineExceededError("the request deadline passed before it was queued")
        loop = asyncio.get_running_loop()
        pending = Pending(prepared, engine, deadline, now, loop, loop.create_future())
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            notify(observer.rejected, "queue_full")
            raise OverloadedError(
                f"the queue is full ({self._queue.maxsize} requests waiting)",
                retry_after_s=self.expected_wait_s(),
            ) from None
        notify(self._observer.queue_depth, self._queue.qsize())
        try:
            return await asyncio.wait_for(pending.future, timeout=deadline - now)
        except TimeoutError:
            notify(observer.deadline_exceeded)
            raise DeadlineExceededError("the request was not done by its deadline") from None
        except DeadlineExceededError:
            notify(observer.deadline_exceeded)
            raise

    # --- the worker thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if self._lane.rows:
                    # Between two steps: what waits joins, oldest first, up to the free rows;
                    # then every running row gets one more token.
                    incoming = self._held + drain(
                        self._queue, max(0, self._lane.free - len(self._held))
                    )
                    self._held = []
                    self._dispatch(incoming)
                    self._lane.advance()
                    continue
                if self._held:  # the rows they waited for have ended
                    batch, self._held = self._held, []
                else:
                    # Nothing running: a request the running lane takes starts at once, and
                    # what arrives meanwhile joins it between steps; waiting `max_wait_ms`
                    # for company is for static batches, which nothing can join.
                    batch = collect_batch(
                        self._queue,
                        max_size=self._max_batch_size,
                        max_wait_s=self._max_wait_s,
                        first_timeout_s=self._poll_s,
                        wait_for_more=lambda first: not self._lane.accepts(first),
                    )
                if not batch:
                    if self._stopping.is_set():
                        return
                    self.health.maybe_probe()
                    continue
                self._dispatch(batch)
            except Exception:  # never let the worker die: that would hang every request
                logger.exception("batcher worker error")

    def _dispatch(self, batch: list[Pending]) -> None:
        if not batch:
            return
        notify(self._observer.queue_depth, self._queue.qsize())
        live = self._live(batch)
        for group in group_by(live, lambda p: (id(p.engine), p.prepared.num_beams)):
            if self._lane.accepts(group[0]):
                room = self._lane.free
                fits = group[:room]
                if fits and self._lane.join_now(fits, room):
                    self._lane.join(fits)
                    self._held.extend(group[room:])
                else:  # no free row, or waiting to join with more: oldest first again
                    self._held.extend(group)
            else:
                self._run_group(group)

    def _live(self, batch: list[Pending]) -> list[Pending]:
        """Requests worth computing: not given up, and able to finish by their deadline."""
        now = time.monotonic()
        # A request that cannot be done before its deadline would be computed for nobody.
        finish = now + self.rate.batch_s
        live = []
        for pending in batch:
            if pending.future.done():  # the caller already gave up (deadline or cancel)
                notify(self._observer.expired_unrun)
                continue
            if pending.deadline <= finish:
                notify(self._observer.expired_unrun)
                resolve(pending, error=DeadlineExceededError("the deadline passed in the queue"))
            else:
                live.append(pending)
        return live

    def _run_group(self, group: list[Pending]) -> None:
        started = time.monotonic()
        for pending in group:
            notify(self._observer.queue_wait, started - pending.enqueued)
        try:
            with self.health.running():
                output = group[0].engine.generate([p.prepared for p in group])
            if len(output.generations) != len(group):
                raise RuntimeError(
                    f"generate returned {len(output.generations)} results for {len(group)} requests"
                )
        except Exception:
            self.health.failed()
            logger.exception("a batch of %d requests failed", len(group))
            for pending in group:
                resolve(pending, error=BatchFailedError("the batch this request ran in failed"))
            return
        elapsed = time.monotonic() - started
        self.health.succeeded()
        self.rate.record(elapsed, len(group))
        notify(self._observer.batch, len(group), output.timings)
        if output.timings.reruns:
            notify(self._observer.reran, output.timings.reruns)
        for pending, generation in zip(group, output.generations, strict=True):
            done = Generated(generation, started - pending.enqueued, elapsed)
            resolve(pending, result=done)
