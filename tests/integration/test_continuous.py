"""Iteration-level batching on the tiny real model: rows that join and leave a running
decode get exactly the tokens they get when decoded alone in a static batch."""

import copy

import numpy as np
import pytest

from explain.continuous import RunningBatch, joinable
from explain.items import Item
from explain.types import ExplainJob
from tests.integration.test_runtime import engine_for

SHORT = (Item("Heat (1995)", "1", {"genres": ["Crime"]}),)
LONG = tuple(
    Item(f"Film number {k} ({1950 + 3 * k})", str(k), {"genres": ["Drama", "Sci-Fi"][: 1 + k % 2]})
    for k in range(14)
)
ITEM = Item("Alien (1979)", "99", {"genres": ["Horror", "Sci-Fi"]})


@pytest.fixture(scope="module")
def engine(tiny_store):
    return engine_for(tiny_store.store_dir, tiny_store.name)


def jobs(tiny_store):
    known = tiny_store.known_users
    return [
        ExplainJob(known[0], SHORT, ITEM, 6, 1),
        ExplainJob("never-seen", LONG, ITEM, 20, 1),
        ExplainJob(known[1], LONG[:5], ITEM, 3, 1),
        ExplainJob(known[2], (), ITEM, 12, 1),
        ExplainJob(known[3], LONG, Item("Bare title", None, {}), 16, 1),
        ExplainJob("u-x", SHORT + LONG[:2], ITEM, 9, 1),
    ]


def alone(engine, job):
    prepared = engine.prepare(job)
    return engine.generate([prepared]).generations[0].candidates


def test_the_served_graphs_can_join(engine):
    assert joinable(engine)


@pytest.mark.parametrize("per_call", ["a few requests", "the whole join (as on a GPU)"])
def test_rows_joining_and_leaving_decode_as_they_would_alone(engine, tiny_store, per_call):
    work = jobs(tiny_store)
    expected = {k: alone(engine, job) for k, job in enumerate(work)}
    running = RunningBatch(engine, max_rows=4)
    if per_call != "a few requests":  # the encoder's whole-batch path writes into the store
        running.backend = copy.copy(running.backend)
        running.backend.encode_tokens = None
    got, joined_at = {}, {}
    waiting = list(enumerate(work))
    step = 0
    while waiting or len(running):
        # Join at different steps, a few at a time, as requests arrive.
        if waiting and (step % 3 == 0 or not len(running)):
            take = waiting[: min(2, running.free)]
            waiting = waiting[len(take) :]
            running.join([(k, engine.prepare(job)) for k, job in take])
            joined_at.update({k: step for k, _ in take})
        for ended in running.step():
            got[ended.key] = ended.generation.candidates
        step += 1
    assert got == expected
    assert len(set(joined_at.values())) >= 3  # rows really joined at different steps
    assert running.steps == step


@pytest.fixture(scope="module")
def values_in_int8(tiny_model_dir, tmp_path_factory):
    """The tiny model's int8 graphs of the `svd-head-k8-inplace` recipe (cross keys and values
    in 8 bits, the keys transposed, the self-attention cache in place), loaded to serve."""
    from explain.artifacts import SVD_HEAD_K8_INPLACE
    from tests.integration.test_variants import int8_explainer

    return int8_explainer(tiny_model_dir, tmp_path_factory.mktemp("k8"), SVD_HEAD_K8_INPLACE)


def test_int8_keys_values_and_their_scales_join_and_leave_with_their_rows(
    values_in_int8, tiny_store
):
    engine = values_in_int8
    work = jobs(tiny_store)
    expected = {k: alone(engine, job) for k, job in enumerate(work)}
    running = RunningBatch(engine, max_rows=3)
    got = {}
    for k, job in enumerate(work):  # one joins every other step
        while not running.free:
            got.update({e.key: e.generation.candidates for e in running.step()})
        running.join([(k, engine.prepare(job))])
        got.update({e.key: e.generation.candidates for e in running.step()})
        # the store holds the keys and values in uint8, their scales [rows, heads, src, 1]
        # beside them; the keys [rows, heads, head_dim, src], as the decoder takes them
        cross = running.cross
        for kind in ("key", "value"):
            stored = cross[f"cross_{kind}_0"]
            assert stored.dtype == np.uint8
            scales = cross[f"cross_{kind}_scale_0"]
            by_source = stored.swapaxes(2, 3) if kind == "key" else stored
            assert scales.shape == (*by_source.shape[:3], 1)
            assert (kind == "key") == (f"cross_{kind}_0" in engine.backend.transposed)
    while len(running):
        got.update({e.key: e.generation.candidates for e in running.step()})
    assert got == expected


def test_a_dropped_row_leaves_and_the_rest_are_unchanged(engine, tiny_store):
    work = jobs(tiny_store)[:4]
    expected = {k: alone(engine, job) for k, job in enumerate(work)}
    running = RunningBatch(engine, max_rows=8)
    running.join([(k, engine.prepare(job)) for k, job in enumerate(work)])
    running.step()
    assert running.drop([1]) == 1 and len(running) == 3
    got = {}
    while len(running):
        got.update({e.key: e.generation.candidates for e in running.step()})
    assert got == {k: v for k, v in expected.items() if k != 1}


def test_joins_write_the_cross_keys_in_place_and_the_store_narrows_when_long_rows_leave(
    engine, tiny_store
):
    work = jobs(tiny_store)
    long_job, short_job = work[1], work[0]
    expected = alone(engine, short_job)
    running = RunningBatch(engine, max_rows=4)
    running.join([("long", engine.prepare(long_job))])
    name = running.cross_names[0]
    first = running.cross[name]
    wide = first.shape[2]
    running.step()
    running.join([("short", engine.prepare(short_job))])
    both = running.cross[name]
    # The second join wrote its row after the first, in the same buffer: no second copy.
    assert both.shape[0] == 2 and np.shares_memory(both[:1], first)
    assert np.array_equal(both[0], first[0])
    short_length = len(engine.prepare(short_job).student.input_ids)
    assert short_length * 4 <= wide * 3  # the test needs a source a quarter shorter
    assert not both[1, :, short_length:].any()  # zeros past the joining row's source
    assert running.drop(["long"]) == 1
    # The long row is cut out at once (half the slots); the store narrows to the short source.
    assert running.cross[name].shape[:3] == (1, both.shape[1], short_length)
    assert running.encoder_mask.shape == (1, short_length)
    got = {}
    while len(running):
        got.update({e.key: e.generation.candidates for e in running.step()})
    assert got == {"short": expected}


@pytest.mark.parametrize("kept", [True, False])
def test_with_io_binding_the_cross_store_is_uploaded_once_per_change(
    engine, tiny_store, monkeypatch, kept
):
    """IO binding on the CPU device stands for CUDA's: the store's live rows go to the
    device after a join or a cut, not at every step, and the tokens do not change."""
    monkeypatch.setattr(engine.backend.decoder, "io_binding", True)
    work = jobs(tiny_store)
    expected = {k: alone(engine, job) for k, job in enumerate(work)}
    running = RunningBatch(engine, max_rows=4)
    running.keep_cross_on_device = kept
    got = {}
    waiting = list(enumerate(work))
    changes = 0
    while waiting or len(running):
        if waiting and running.free >= 2:
            take, waiting = waiting[:2], waiting[2:]
            running.join([(k, engine.prepare(job)) for k, job in take])
            changes += 1
        slots = len(running.slots)
        ended = running.step()
        got.update({e.key: e.generation.candidates for e in ended})
        changes += len(running.slots) != slots  # a cut after this step
    assert got == expected
    if kept:
        assert 1 <= running.cross_uploads <= changes < running.steps
    else:
        assert running.cross_uploads == 0  # every step copied the host store instead


def test_join_refuses_beams_and_overflow(engine, tiny_store):
    running = RunningBatch(engine, max_rows=1)
    job = jobs(tiny_store)[0]
    with pytest.raises(ValueError, match="greedy"):
        running.join([(0, engine.prepare(ExplainJob("u", SHORT, ITEM, 6, 2)))])
    with pytest.raises(ValueError, match="cannot join"):
        running.join([(0, engine.prepare(job)), (1, engine.prepare(job))])
    assert len(running) == 0


class StepLog:
    """A batch observer that keeps what the running lane reports."""

    def __init__(self) -> None:
        self.joins: list[int] = []
        self.steps: list[int] = []
        self.batches: list[int] = []
        self.ended = 0
        self.abandoned = 0
        self.reruns = 0

    def queue_depth(self, depth):
        pass

    def queue_wait(self, seconds):
        pass

    def batch(self, size, timings):
        self.batches.append(size)

    def joined(self, size, encode_s):
        self.joins.append(size)

    def step(self, rows, seconds):
        self.steps.append(rows)

    def reran(self, steps):
        self.reruns += steps

    def row_ended(self, seconds):
        self.ended += 1

    def rows_abandoned(self, rows):
        self.abandoned += rows

    def deadline_exceeded(self):
        pass

    def expired_unrun(self):
        pass

    def rejected(self, reason):
        pass

    def probe(self, ok):
        pass


def started_batcher(log, max_batch_size=4, max_wait_ms=1.0):
    """A running `DynamicBatcher` with iteration-level batching on, reporting to `log`."""
    from service.batching import DynamicBatcher

    batcher = DynamicBatcher(
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=64,
        observer=log,
        continuous="on",
    )
    batcher.start()
    return batcher


@pytest.mark.anyio
async def test_the_batcher_answers_rows_as_they_end_and_lets_new_ones_join(engine, tiny_store):
    import asyncio
    import time

    log = StepLog()
    batcher = started_batcher(log)
    try:
        work = jobs(tiny_store)
        expected = [alone(engine, job) for job in work]
        deadline = time.monotonic() + 60
        done_order: list[int] = []

        async def one(k: int):
            await asyncio.sleep(0.002 * k)  # arrive one after another
            got = await batcher.submit(engine.prepare(work[k]), deadline, engine)
            done_order.append(k)
            return got

        results = await asyncio.gather(*(one(k) for k in range(len(work))))
    finally:
        batcher.stop()
    assert [r.generation.candidates for r in results] == expected
    assert log.ended == len(work) and not log.batches  # no static batch ran
    assert sum(log.joins) == len(work) and len(log.joins) >= 2  # joined in several groups
    assert max(log.steps) <= 4  # never more rows than max_batch_size
    # The 3-token request ended before the 20-token one that arrived before it.
    assert done_order.index(2) < done_order.index(1)
    assert batcher.running_rows == 0


@pytest.mark.anyio
async def test_a_lone_joinable_request_starts_without_waiting_for_company(engine, tiny_store):
    import asyncio
    import time

    log = StepLog()
    # A minute's batching window: a static batch would sit in it; a row that later arrivals
    # can join between steps starts at once.
    batcher = started_batcher(log, max_wait_ms=60_000.0)
    try:
        job = jobs(tiny_store)[2]
        got = await asyncio.wait_for(
            batcher.submit(engine.prepare(job), time.monotonic() + 120, engine), timeout=30
        )
    finally:
        batcher.stop()
    assert got.generation.candidates == alone(engine, job)
    assert log.joins == [1] and not log.batches


@pytest.mark.anyio
async def test_a_row_whose_caller_gave_up_stops_being_computed(engine, tiny_store):
    import asyncio
    import time

    from service.errors import DeadlineExceededError

    log = StepLog()
    batcher = started_batcher(log)
    try:
        from dataclasses import replace

        # EOS banned: this row could only end at its 90th token.
        prepared = engine.prepare(ExplainJob("u", LONG, ITEM, 90, 1))
        prepared = replace(prepared, banned=(*prepared.banned, engine.tokenizer.eos_id))
        task = asyncio.ensure_future(batcher.submit(prepared, time.monotonic() + 60, engine))
        while not log.steps:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if batcher.running_rows == 0:
                break
            await asyncio.sleep(0.005)
        assert batcher.running_rows == 0 and log.abandoned == 1 and log.ended == 0
        assert len(log.steps) < 90  # dropped long before its 90 tokens
        # And the batcher still serves.
        short = engine.prepare(jobs(tiny_store)[2])
        got = await batcher.submit(short, time.monotonic() + 60, engine)
        assert got.generation.candidates == alone(engine, jobs(tiny_store)[2])
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(short, time.monotonic() - 1, engine)
    finally:
        batcher.stop()


@pytest.fixture(scope="module")
def two_lanes(tiny_store):
    return engine_for(tiny_store.store_dir, tiny_store.name, lanes=2)


def test_a_static_batch_split_over_two_lanes_gets_the_same_tokens(
    engine, two_lanes, tiny_store, monkeypatch
):
    import threading

    work = jobs(tiny_store)
    one = engine.generate([engine.prepare(job) for job in work]).generations
    backend = two_lanes.backend
    parts: list[tuple[int, str]] = []
    whole = backend._generate

    def part(batch, request):
        parts.append((batch.rows, threading.current_thread().name))
        return whole(batch, request)

    monkeypatch.setattr(backend, "_generate", part)
    two = two_lanes.generate([two_lanes.prepare(job) for job in work]).generations
    monkeypatch.undo()
    assert backend.lanes.count == two_lanes.info.lanes == 2
    # The batch really ran as two parts of 3 rows, on the lanes' threads.
    assert sorted(rows for rows, _ in parts) == [3, 3]
    assert all(name.startswith("prism-lane") for _, name in parts)
    assert [g.candidates for g in two] == [g.candidates for g in one]
    # The beam second pass splits the same way.
    wide = [engine.widen(engine.prepare(job)) for job in work[:3]]
    beams = two_lanes.generate([two_lanes.widen(two_lanes.prepare(job)) for job in work[:3]])
    assert wide[0].num_beams > 1
    assert [g.candidates for g in beams.generations] == [
        g.candidates for g in engine.generate(wide).generations
    ]


@pytest.mark.anyio
async def test_two_lanes_decode_side_by_side_and_a_failing_lane_fails_only_its_rows(
    engine, two_lanes, tiny_store, monkeypatch
):
    import asyncio
    import threading
    import time

    from service.errors import BatchFailedError

    work = jobs(tiny_store)
    expected = [alone(engine, job) for job in work]
    step = RunningBatch.step
    threads: set[str] = set()
    poisoned = 7  # a row with this token limit makes its lane's step raise

    def watched(self):
        threads.add(threading.current_thread().name)
        if any(row.limit == poisoned for row in self.rows):
            raise RuntimeError("this lane's step failed")
        return step(self)

    monkeypatch.setattr(RunningBatch, "step", watched)
    log = StepLog()
    batcher = started_batcher(log, max_batch_size=8, max_wait_ms=50.0)
    try:
        deadline = time.monotonic() + 60
        results = await asyncio.gather(
            *(batcher.submit(two_lanes.prepare(job), deadline, two_lanes) for job in work)
        )
        assert [r.generation.candidates for r in results] == expected
        assert any(name.startswith("prism-lane") for name in threads)
        assert max(log.steps) > 1  # rows of both lanes counted in one step
        # One request whose lane fails: it fails, the row in the other lane is answered.
        bad = ExplainJob("u", LONG, ITEM, poisoned, 1)
        good, failed = await asyncio.gather(
            batcher.submit(two_lanes.prepare(work[1]), deadline, two_lanes),
            batcher.submit(two_lanes.prepare(bad), deadline, two_lanes),
            return_exceptions=True,
        )
        assert isinstance(failed, BatchFailedError)
        assert good.generation.candidates == expected[1]
    finally:
        batcher.stop()
    assert batcher.running_rows == 0


def test_lanes_on_float_graphs_warn(tiny_store, caplog):
    with caplog.at_level("WARNING", logger="explain.loading"):
        fp32 = engine_for(tiny_store.store_dir, tiny_store.name, lanes=2, variant="fp32")
    assert fp32.info.lanes == 2
    assert any("decode lanes on fp32 graphs" in r.getMessage() for r in caplog.records)
