"""The batcher's iteration-level path: greedy requests join the running decode between steps.

`explain.continuous.RunningBatch` does the decoding; this lane does the serving around it,
on the batcher's worker thread: which queued requests may join (greedy, of an explainer
whose graphs take joining rows), settling each row's future the moment its row ends,
dropping rows whose caller gave up (never computing them further), failing only the rows
of a step or join that raised, and feeding the service rate that admission reads.

During a hot swap the old and the new explainer each have their own running batch; new
requests only reach the new one, so the old one drains and is let go. With decode lanes
(`explain.lanes`) an explainer's rows are split over one running batch per lane: new rows go
to the lanes with fewest rows, and the lanes join and step at once, each on its own thread; a
lane that raises fails only its own rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from functools import partial

from explain.continuous import Ended, RunningBatch, joinable
from explain.explainer import Explainer
from explain.lanes import Lanes, spread
from explain.onnx_backend import OnnxSeq2Seq
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
        self._batches: dict[int, list[RunningBatch]] = {}  # id(explainer) -> one per lane
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
        """Encode `group` (one explainer's greedy requests) into its running batches. If an
        encoder call fails, only the requests it encoded fail."""
        engine = group[0].engine
        assert isinstance(engine, Explainer)
        batches = self._batches.get(id(engine))
        if batches is None:
            batches = self._batches[id(engine)] = [
                RunningBatch(engine, max_rows=self.max_rows) for _ in range(_lanes(engine).count)
            ]
        parts: list[list[Pending]] = [[] for _ in batches]
        for pending, lane in zip(group, spread([len(b) for b in batches], len(group)), strict=True):
            parts[lane].append(pending)
        joining = [(batch, part) for batch, part in zip(batches, parts, strict=True) if part]
        started = time.monotonic()
        for pending in group:
            notify(self._observer.queue_wait, started - pending.enqueued)
        with self._health.running():
            outcomes = _lanes(engine).run(
                [
                    partial(batch.join, [(id(p), p.prepared) for p in part])
                    for batch, part in joining
                ]
            )
        joined = time.monotonic()
        encode_s = joined - started
        ok = 0
        for (_, part), outcome in zip(joining, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._health.failed()
                logger.error(
                    "%d requests failed to join the running batch", len(part), exc_info=outcome
                )
                for pending in part:
                    resolve(pending, error=BatchFailedError("the batch this request ran in failed"))
                continue
            for pending in part:
                self._rows[id(pending)] = (pending, joined)
            ok += len(part)
        self._busy_s += encode_s
        if ok:
            notify(self._observer.joined, ok, encode_s)

    def advance(self) -> None:
        """One decode step for every running batch; rows that ended are answered at once."""
        for key, batches in list(self._batches.items()):
            for batch in batches:
                self._drop_abandoned(batch)
            if any(len(batch) for batch in batches):
                self._step(_lanes(batches[0].explainer), [b for b in batches if len(b)])
            if not any(len(batch) for batch in batches):
                del self._batches[key]  # drained (a swapped-out explainer is let go here)

    def _drop_abandoned(self, batch: RunningBatch) -> None:
        """Rows whose caller gave up (deadline, disconnect) are not computed any further."""
        gone = [key for key in batch.row_keys() if self._rows[key][0].future.done()]
        if gone:
            batch.drop(gone)
            for key in gone:
                del self._rows[key]
            notify(self._observer.rows_abandoned, len(gone))

    def _step(self, lanes: Lanes, batches: Sequence[RunningBatch]) -> None:
        rows = sum(len(batch) for batch in batches)
        started = time.perf_counter()
        with self._health.running():
            outcomes = lanes.run([batch.step for batch in batches])
        seconds = time.perf_counter() - started
        ended: list[Ended] = []
        for batch, outcome in zip(batches, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._health.failed()
                logger.error("a decode step of %d rows failed", len(batch), exc_info=outcome)
                for key in batch.fail_all():
                    entry = self._rows.pop(key, None)
                    if entry is not None:
                        failed = BatchFailedError("the batch this request ran in failed")
                        resolve(entry[0], error=failed)
                continue
            ended += outcome
        if not any(isinstance(outcome, Exception) for outcome in outcomes):
            self._health.succeeded()
        self._busy_s += seconds
        self.step_s = seconds if not self.step_s else 0.9 * self.step_s + 0.1 * seconds
        notify(self._observer.step, rows, seconds)
        reruns = sum(batch.last_reruns for batch in batches)
        if reruns:
            notify(self._observer.reran, reruns)
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
        for batches in self._batches.values():
            for batch in batches:
                batch.fail_all()
        for pending, _ in self._rows.values():
            resolve(pending, error=error)
        self._rows.clear()
        self._batches.clear()


def _lanes(explainer: Explainer) -> Lanes:
    backend = explainer.backend
    return backend.lanes if isinstance(backend, OnnxSeq2Seq) else _ONE_LANE


_ONE_LANE = Lanes(1)
