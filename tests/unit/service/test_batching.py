from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from explain.explainer import BatchTimings
from explain.items import Item
from explain.types import ExplainJob
from service.batching import DynamicBatcher, Generated
from service.collect import collect_batch, group_by
from service.errors import (
    BatchFailedError,
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
)

pytestmark = pytest.mark.anyio


class RecordingObserver:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def queue_depth(self, depth: int) -> None:
        self.events.append(("depth", depth))

    def queue_wait(self, seconds: float) -> None:
        self.events.append(("wait", seconds))

    def batch(self, size: int, timings: BatchTimings) -> None:
        self.events.append(("batch", size))

    def joined(self, size: int, encode_s: float) -> None:
        self.events.append(("joined", size))

    def step(self, rows: int, seconds: float) -> None:
        self.events.append(("step", rows))

    def reran(self, steps: int) -> None:
        self.events.append(("reran", steps))

    def row_ended(self, seconds: float) -> None:
        self.events.append(("row_ended", seconds))

    def rows_abandoned(self, rows: int) -> None:
        self.events.append(("abandoned", rows))

    def deadline_exceeded(self) -> None:
        self.events.append(("deadline", None))

    def rejected(self, reason: str) -> None:
        self.events.append(("rejected", reason))

    def expired_unrun(self) -> None:
        self.events.append(("expired", None))

    def probe(self, ok: bool) -> None:
        self.events.append(("probe", ok))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


class BrokenObserver(RecordingObserver):
    def __getattribute__(self, name: str) -> Any:
        if name in {
            "queue_depth",
            "queue_wait",
            "batch",
            "deadline_exceeded",
            "rejected",
            "expired_unrun",
            "probe",
        }:

            def fail(*_: Any) -> None:
                raise RuntimeError("metrics backend down")

            return fail
        return super().__getattribute__(name)


def job(user: str = "4217", beams: int = 1) -> ExplainJob:
    return ExplainJob(
        user_id=user,
        history=(Item("Star Wars (1977)"),),
        item=Item("Back to the Future (1985)"),
        max_new_tokens=16,
        num_beams=beams,
    )


def user_of(done: Generated) -> str:
    """The user whose request produced `done` (the scripted engine spells it in tokens)."""
    return "".join(map(chr, done.generation.candidates[0][1:-1]))


def later(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


@asynccontextmanager
async def running(
    engine: Any, observer: Any = None, **kwargs: Any
) -> AsyncIterator[DynamicBatcher]:
    options = {"max_batch_size": 16, "max_wait_ms": 5.0, "max_queue": 64} | kwargs
    batcher = DynamicBatcher(observer=observer or RecordingObserver(), **options)
    batcher.start()
    try:
        yield batcher
    finally:
        engine.gate.set()
        await asyncio.to_thread(batcher.stop, 2.0)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def hold_first_batch(
    engine: Any, batcher: DynamicBatcher, first: ExplainJob
) -> asyncio.Task[Any]:
    """Submit `first` and wait until the worker is stuck on it (the engine's gate is shut)."""
    engine.gate.clear()
    task = asyncio.ensure_future(batcher.submit(engine.prepare(first), later(), engine))
    await until(lambda: len(engine.batches) == 1)
    return task


# --- the pure parts -----------------------------------------------------------------------


def test_collect_batch_empty_queue_returns_nothing() -> None:
    assert collect_batch(queue.Queue(), max_size=4, max_wait_s=0.01, first_timeout_s=0.01) == []


def test_collect_batch_stops_at_max_size_and_takes_what_is_queued() -> None:
    source: queue.Queue[int] = queue.Queue()
    for i in range(10):
        source.put(i)
    # Even with no wait at all, what is already queued joins the batch, up to max_size.
    assert collect_batch(source, max_size=4, max_wait_s=0.0, first_timeout_s=0.1) == [0, 1, 2, 3]
    assert collect_batch(source, max_size=100, max_wait_s=0.0, first_timeout_s=0.1) == [
        4,
        5,
        6,
        7,
        8,
        9,
    ]


class ScriptedQueue(queue.Queue[int]):
    """Items that arrive at set times on a fake clock; waiting advances the clock.

    So `collect_batch`'s timing is tested by the order of events, not by a wall clock that a
    loaded two-core machine can stretch."""

    def __init__(self, arrivals: list[tuple[float, int]]) -> None:
        super().__init__()
        self.arrivals = sorted(arrivals)
        self.now = 0.0
        self.log: list[str] = []

    def clock(self) -> float:
        return self.now

    def get(self, block: bool = True, timeout: float | None = None) -> int:
        if self.arrivals and self.arrivals[0][0] <= self.now + (timeout or 0.0):
            at, item = self.arrivals.pop(0)
            self.now = max(self.now, at)
            self.log.append(f"got {item} at {self.now:.2f}")
            return item
        self.now += timeout or 0.0
        self.log.append(f"gave up at {self.now:.2f}")
        raise queue.Empty

    def get_nowait(self) -> int:
        return self.get(timeout=0.0)


def test_collect_batch_waits_at_most_max_wait_for_more() -> None:
    # 1 is queued, 2 arrives during the wait, 3 after it: the batch closes at 0.1 without 3.
    source = ScriptedQueue([(0.0, 1), (0.02, 2), (0.5, 3)])
    batch = collect_batch(
        source, max_size=8, max_wait_s=0.1, first_timeout_s=0.1, clock=source.clock
    )
    assert batch == [1, 2]
    assert source.log == ["got 1 at 0.00", "got 2 at 0.02", "gave up at 0.10"]


def test_collect_batch_without_waiting_for_more_takes_only_what_is_queued() -> None:
    # 1 and 2 are queued, 3 arrives 0.02 later: a first item that needs no company closes
    # the batch at once, without 3 (the wait of the test above would have taken it).
    source = ScriptedQueue([(0.0, 1), (0.0, 2), (0.02, 3)])

    def collect() -> list[int]:
        return collect_batch(
            source,
            max_size=8,
            max_wait_s=0.1,
            first_timeout_s=0.1,
            clock=source.clock,
            wait_for_more=lambda first: first != 1,
        )

    assert collect() == [1, 2]
    assert source.log == ["got 1 at 0.00", "got 2 at 0.00", "gave up at 0.00"]
    # ... and a first item that does want company waits as before
    assert collect() == [3]
    assert source.log[-1] == "gave up at 0.12"


def test_collect_batch_first_wait_is_bounded_and_then_the_window_starts() -> None:
    # Nothing for 0.3: the first wait (0.25) gives up; a later call starts its window at 0.3.
    source = ScriptedQueue([(0.3, 1), (0.35, 2), (0.45, 3)])
    assert (
        collect_batch(source, max_size=8, max_wait_s=0.1, first_timeout_s=0.25, clock=source.clock)
        == []
    )
    batch = collect_batch(
        source, max_size=8, max_wait_s=0.1, first_timeout_s=0.25, clock=source.clock
    )
    assert batch == [1, 2]
    assert source.log[-1] == "gave up at 0.40"


def test_group_by_keeps_order() -> None:
    jobs = [job("a", 1), job("b", 2), job("c", 1), job("d", 4), job("e", 2)]
    groups = group_by(jobs, lambda j: j.num_beams or 1)
    assert [[j.user_id for j in g] for g in groups] == [["a", "c"], ["b", "e"], ["d"]]


# --- the batcher ----------------------------------------------------------------------------


async def test_concurrent_submits_share_batches(make_engine: Any) -> None:
    engine = make_engine()
    observer = RecordingObserver()
    async with running(engine, observer, max_batch_size=8) as batcher:
        first = await hold_first_batch(engine, batcher, job("first"))
        rest = [
            asyncio.ensure_future(batcher.submit(engine.prepare(job(f"u{i}")), later(), engine))
            for i in range(19)
        ]
        await until(lambda: batcher.depth == 19)
        engine.gate.set()
        results = await asyncio.gather(first, *rest)
    assert engine.batch_sizes == [1, 8, 8, 3]
    assert [user_of(r) for r in results] == ["first", *(f"u{i}" for i in range(19))]
    assert [v for k, v in observer.events if k == "batch"] == [1, 8, 8, 3]
    assert all(r.queue_s >= 0 and r.inference_s >= 0 for r in results)


async def test_num_beams_are_split_into_separate_engine_calls(make_engine: Any) -> None:
    engine = make_engine()
    async with running(engine) as batcher:
        first = await hold_first_batch(engine, batcher, job("a", 1))
        jobs = [job("b", 1), job("c", 2), job("d", 1), job("e", 2)]
        tasks = [
            asyncio.ensure_future(batcher.submit(engine.prepare(j), later(), engine)) for j in jobs
        ]
        await until(lambda: batcher.depth == 4)
        engine.gate.set()
        await asyncio.gather(first, *tasks)
    calls = [[(j.user_id, j.num_beams) for j in b] for b in engine.batches]
    assert calls == [[("a", 1)], [("b", 1), ("d", 1)], [("c", 2), ("e", 2)]]


async def test_full_queue_is_rejected_at_once(make_engine: Any) -> None:
    engine = make_engine()
    observer = RecordingObserver()
    async with running(engine, observer, max_queue=2) as batcher:
        first = await hold_first_batch(engine, batcher, job())
        queued = [
            asyncio.ensure_future(batcher.submit(engine.prepare(job()), later(), engine))
            for _ in range(2)
        ]
        await until(lambda: batcher.depth == 2)
        with pytest.raises(OverloadedError) as caught:
            await batcher.submit(engine.prepare(job()), later(), engine)
        assert int(caught.value.headers["Retry-After"]) >= 1
        engine.gate.set()
        await asyncio.gather(first, *queued)
    assert observer.events.count(("rejected", "queue_full")) == 1


async def test_deadline_while_running_is_504_and_late_result_is_dropped(make_engine: Any) -> None:
    engine = make_engine()
    observer = RecordingObserver()
    async with running(engine, observer) as batcher:
        engine.gate.clear()
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(engine.prepare(job()), time.monotonic() + 0.1, engine)
        assert time.monotonic() - started < 1.0
        engine.gate.set()  # the engine finishes; its result has nowhere to go and must not break
        after = await batcher.submit(engine.prepare(job()), later(), engine)
    assert user_of(after) == "4217"
    assert observer.count("deadline") == 1


async def test_expired_requests_are_never_run(make_engine: Any) -> None:
    engine = make_engine()
    async with running(engine) as batcher:
        first = await hold_first_batch(engine, batcher, job("first"))
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(engine.prepare(job("expires")), time.monotonic() + 0.05, engine)
        engine.gate.set()
        await first
        await batcher.submit(engine.prepare(job("next")), later(), engine)
    seen = [j.user_id for b in engine.batches for j in b]
    assert seen == ["first", "next"]


async def test_passed_deadline_is_refused_before_queueing(make_engine: Any) -> None:
    engine = make_engine()
    async with running(engine) as batcher:
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(engine.prepare(job()), time.monotonic() - 1, engine)
    assert engine.batches == []


async def test_failing_batch_fails_only_its_requests(
    make_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(fail_batches=[1])
    async with running(engine) as batcher:
        first = await hold_first_batch(engine, batcher, job("doomed"))
        others = [
            asyncio.ensure_future(batcher.submit(engine.prepare(job(u)), later(), engine))
            for u in ("b", "c")
        ]
        await until(lambda: batcher.depth == 2)
        with caplog.at_level(logging.ERROR, logger="service.batching"):
            engine.gate.set()
            results = await asyncio.gather(first, *others, return_exceptions=True)
        assert batcher.healthy
    assert isinstance(results[0], BatchFailedError)
    served = [r for r in results[1:] if isinstance(r, Generated)]
    assert [user_of(r) for r in served] == ["b", "c"]
    assert engine.batch_sizes == [1, 2]
    failures = [r for r in caplog.records if r.name == "service.batching"]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_wrong_number_of_outputs_fails_the_batch(make_engine: Any) -> None:
    engine = make_engine(drop_one_output=True)
    async with running(engine) as batcher:
        results = await asyncio.gather(
            *(batcher.submit(engine.prepare(job()), later(), engine) for _ in range(3)),
            return_exceptions=True,
        )
    assert all(isinstance(r, BatchFailedError) for r in results)


async def test_consecutive_failures_make_it_unhealthy_until_a_success(make_engine: Any) -> None:
    engine = make_engine(fail_users=["bad"])
    async with running(engine, max_consecutive_failures=2) as batcher:
        for _ in range(2):
            with pytest.raises(BatchFailedError):
                await batcher.submit(engine.prepare(job("bad")), later(), engine)
        assert not batcher.healthy
        await batcher.submit(engine.prepare(job("good")), later(), engine)
        assert batcher.healthy


async def test_stop_drains_the_queue(make_engine: Any) -> None:
    engine = make_engine()
    batcher = DynamicBatcher(
        max_batch_size=1, max_wait_ms=0, max_queue=8, observer=RecordingObserver()
    )
    batcher.start()
    first = await hold_first_batch(engine, batcher, job("a"))
    queued = asyncio.ensure_future(batcher.submit(engine.prepare(job("b")), later(), engine))
    await until(lambda: batcher.depth == 1)
    stopping = asyncio.ensure_future(asyncio.to_thread(batcher.stop, 5.0))
    await asyncio.sleep(0.05)
    with pytest.raises(NotReadyError):
        await batcher.submit(engine.prepare(job("late")), later(), engine)
    engine.gate.set()
    await stopping
    results = await asyncio.gather(first, queued)
    assert [user_of(r) for r in results] == ["a", "b"]
    assert not batcher.healthy


async def test_stop_fails_what_it_cannot_drain(make_engine: Any) -> None:
    engine = make_engine()
    batcher = DynamicBatcher(
        max_batch_size=1, max_wait_ms=0, max_queue=8, observer=RecordingObserver()
    )
    batcher.start()
    first = await hold_first_batch(engine, batcher, job("a"))
    queued = asyncio.ensure_future(batcher.submit(engine.prepare(job("b")), later(), engine))
    await until(lambda: batcher.depth == 1)
    await asyncio.to_thread(batcher.stop, 0.05)  # the engine is stuck: the worker cannot drain
    with pytest.raises(NotReadyError):
        await queued
    engine.gate.set()
    await first


async def test_submit_before_start_is_not_ready(make_engine: Any) -> None:
    engine = make_engine()
    batcher = DynamicBatcher(
        max_batch_size=1, max_wait_ms=0, max_queue=1, observer=RecordingObserver()
    )
    with pytest.raises(NotReadyError):
        await batcher.submit(engine.prepare(job()), later(), engine)


async def test_a_broken_observer_never_fails_requests(make_engine: Any) -> None:
    engine = make_engine()
    async with running(engine, BrokenObserver()) as batcher:
        results = await asyncio.gather(
            *(batcher.submit(engine.prepare(job()), later(), engine) for _ in range(5))
        )
    assert len(results) == 5
