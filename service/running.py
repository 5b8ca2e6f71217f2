"""The batcher's iteration-level path: greedy requests join the running decode between steps.

`explain.continuous.RunningBatch` does the decoding; this lane does the serving around it,
on the batcher's worker thread: which queued requests may join (greedy, of an explainer
whose graphs take joining rows), settling each row's future the moment its row ends,
dropping rows whose caller gave up (never computing them further), failing only the rows
of a step or join that raised, and feeding the service rate that admission reads.

During a hot swap the old and the new explainer each have their own running batch; new
requests only reach the new one, so the old one drains and is let go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence

from explain.continuous import RunningBatch, joinable
from explain.explainer import Explainer
from service.collect import ServiceRate
from service.errors import BatchFailedError, ServiceError
from service.health import RuntimeHealth
from service.pending import BatchObserver, Generated, Pending, notify, resolve

logger = logging.getLogger(__name__)
# `auto` joins rows only for models whose decoder step outweighs the Python around it: on
# the 2-core machine bart-base (d_model 768) gained 1.42x throughput and the 128-wide default
# model lost (0.83x), see README *Benchmarks*.
AUTO_MIN_D_MODEL = 512


class RunningLane:
    """Every running batch (one per explainer), and the requests decoding in them."""

    def __init__(
        self,
        *,
        max_rows: int,
        mode: str = "auto",
        observer: BatchObserver,
        health: RuntimeHealth,
        rate: ServiceRate,
    ) -> None:
        self.max_rows = max_rows
        self.mode = mode
        self._observer = observer
        self._health = health
        self._rate = rate
        self._batches: dict[int, RunningBatch] = {}
        self._rows: dict[Hashable, tuple[Pending, float]] = {}  # id(pending) -> (it, joined)
        self._busy_s = 0.0  # decoder seconds since rows last ended
        self.step_s = 0.0  # a decode step's seconds, moving average
        # Joining costs an encoder call and pauses every running row for it: a few arrivals
        # are gathered first, unless the oldest has waited a few steps already.
        self.join_min = max(1, max_rows // 4)
        self.join_patience_steps = 3.0

    @property
    def rows(self) -> int:
        return len(self._rows)

    @property
    def free(self) -> int:
        return max(0, self.max_rows - len(self._rows))

    def accepts(self, pending: Pending) -> bool:
        """A greedy request of an explainer whose decoder takes joining rows (with `auto`: of
        a model at least `AUTO_MIN_D_MODEL` wide)."""
        engine = pending.engine
        if self.mode == "off" or pending.prepared.num_beams != 1:
            return False
        if not isinstance(engine, Explainer) or not joinable(engine):
            return False
        return self.mode == "on" or engine.info.d_model >= AUTO_MIN_D_MODEL

    def join_now(self, group: Sequence[Pending], room: int) -> bool:
        """Whether `group` (the waiting requests that fit, oldest first) should join before
        the next step, or wait to join with more: never when no row is running, when it fills
        the free rows or a quarter of the batch, or when its oldest has waited 3 steps."""
        if not self._rows or len(group) >= min(self.join_min, room):
            return True
        waited = time.monotonic() - min(p.enqueued for p in group)
        return waited >= self.join_patience_steps * self.step_s

    def join(self, group: Sequence[Pending]) -> None:
        """Encode `group` (one explainer's greedy requests) into its running batch. If the
        encoder fails, only `group` fails."""
        engine = group[0].engine
        assert isinstance(engine, Explainer)
        batch = self._batches.get(id(engine))
        if batch is None:
            batch = self._batches[id(engine)] = RunningBatch(engine, max_rows=self.max_rows)
        started = time.monotonic()
        for pending in group:
            notify(self._observer.queue_wait, started - pending.enqueued)
        try:
            with self._health.running():
                encode_s = batch.join([(id(p), p.prepared) for p in group])
        except Exception:
            self._health.failed()
            logger.exception("%d requests failed to join the running batch", len(group))
            for pending in group:
                resolve(pending, error=BatchFailedError("the batch this request ran in failed"))
            return
        self._busy_s += encode_s
        joined = time.monotonic()
        for pending in group:
            self._rows[id(pending)] = (pending, joined)
        notify(self._observer.joined, len(group), encode_s)

    def advance(self) -> None:
        """One decode step for every running batch; rows that ended are answered at once."""
        for key, batch in list(self._batches.items()):
            self._drop_abandoned(batch)
            if not len(batch):
                del self._batches[key]  # drained (a swapped-out explainer is let go here)
                continue
            self._step(batch)
            if not len(batch):
                del self._batches[key]

    def _drop_abandoned(self, batch: RunningBatch) -> None:
        """Rows whose caller gave up (deadline, disconnect) are not computed any further."""
        gone = [key for key in batch.row_keys() if self._rows[key][0].future.done()]
        if gone:
            batch.drop(gone)
            for key in gone:
                del self._rows[key]
            notify(self._observer.rows_abandoned, len(gone))

    def _step(self, batch: RunningBatch) -> None:
        rows = len(batch)
        started = time.perf_counter()
        try:
            with self._health.running():
                ended = batch.step()
        except Exception:
            self._health.failed()
            logger.exception("a decode step of %d rows failed", rows)
            for key in batch.fail_all():
                entry = self._rows.pop(key, None)
                if entry is not None:
                    resolve(
                        entry[0], error=BatchFailedError("the batch this request ran in failed")
                    )
            return
        seconds = time.perf_counter() - started
        self._health.succeeded()
        self._busy_s += seconds
        self.step_s = seconds if not self.step_s else 0.9 * self.step_s + 0.1 * seconds
        notify(self._observer.step, rows, seconds)
        if not ended:
            return
        now = time.monotonic()
        latencies = []
        for row in ended:
            entry = self._rows.pop(row.key, None)
            if entry is None:
                continue
            pending, joined = entry
            latencies.append(now - joined)
            notify(self._observer.row_ended, now - joined)
            resolve(
                pending, result=Generated(row.generation, joined - pending.enqueued, now - joined)
            )
        if latencies:
            self._rate.record_rows(sum(latencies) / len(latencies), self._busy_s, len(latencies))
            self._busy_s = 0.0

    def fail_all(self, error: ServiceError) -> None:
        """Fail every running row (the service is stopping)."""
        for batch in self._batches.values():
            batch.fail_all()
        for pending, _ in self._rows.values():
            resolve(pending, error=error)
        self._rows.clear()
        self._batches.clear()
