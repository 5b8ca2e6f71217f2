"""Greedy decoding from the decoder graph's candidates (`training.graph_candidates`) on the
tiny real model: every token is the one the full logits' argmax gives, whether the
candidates settle a step or the step is run again for its logits, static or running."""

import copy
import dataclasses

import numpy as np
import pytest

from explain import artifacts
from explain.continuous import RunningBatch
from tests.integration.test_continuous import jobs
from tests.integration.test_runtime import engine_for


@pytest.fixture(scope="module")
def engine(tiny_store):
    return engine_for(tiny_store.store_dir, tiny_store.name)


def without_candidates(engine):
    """The same engine reading the full logits at every step (as graphs exported before the
    candidates are decoded)."""
    other = copy.copy(engine)
    other.backend = copy.copy(engine.backend)
    decoder = copy.copy(engine.backend.decoder)
    decoder.outputs = {
        k: v
        for k, v in decoder.outputs.items()
        if k not in (artifacts.TOP_IDS, artifacts.TOP_SCORES)
    }
    decoder.output_names = list(decoder.outputs)
    other.backend.decoder = decoder
    return other


class LogitReads:
    """Counts the decoder runs that ask for the logits alone (a step run again)."""

    def __init__(self, decoder, monkeypatch):
        self.count = 0
        run = decoder.run

        def counted(feeds, **kwargs):
            if list(kwargs.get("outputs") or ()) == [artifacts.LOGITS]:
                self.count += 1
            return run(feeds, **kwargs)

        monkeypatch.setattr(decoder, "run", counted)


def prepared(engine, tiny_store, bans):
    """The probe jobs prepared; `bans` "own": the slots each request cannot fill; "most":
    every token but 40 (and EOS), so a step's candidates are often all banned."""
    rows = [engine.prepare(job) for job in jobs(tiny_store)]
    if bans == "own":
        return rows
    vocab = engine.backend.spec.vocab_size
    keep = np.random.default_rng(0).choice(np.arange(4, vocab), 40, replace=False)
    banned = tuple(int(t) for t in np.setdiff1d(np.arange(4, vocab), keep))
    return [dataclasses.replace(p, banned=banned) for p in rows]


def test_the_served_decoder_gives_its_candidates(engine):
    outputs = engine.backend.decoder.outputs
    assert outputs[artifacts.TOP_IDS].shape[1] == min(
        artifacts.CANDIDATES, engine.backend.spec.vocab_size
    )
    assert outputs[artifacts.TOP_SCORES].dtype == np.float32


@pytest.mark.parametrize("bans", ["own", "most"])
@pytest.mark.parametrize("binding", [False, True])
def test_static_greedy_tokens_are_the_full_argmaxs(engine, tiny_store, monkeypatch, bans, binding):
    full = without_candidates(engine)
    rows = prepared(engine, tiny_store, bans)
    want = [g.candidates for g in full.generate(rows).generations]
    if binding:  # the CUDA code path (outputs named, some kept where they ran), on the CPU
        for session in (engine.backend.encoder, engine.backend.decoder):
            monkeypatch.setattr(session, "io_binding", True)
    reads = LogitReads(engine.backend.decoder, monkeypatch)
    output = engine.generate(rows)
    got = [g.candidates for g in output.generations]
    assert got == want
    assert output.timings.reruns == reads.count  # what the batcher reports (below)
    steps = max(len(c[0]) for c in want)
    if bans == "own":
        assert reads.count < steps  # the candidates settled most steps
    else:
        assert reads.count > 0  # and where they could not, the step ran again


@pytest.mark.parametrize("bans", ["own", "most"])
def test_a_running_decode_picks_the_full_argmaxs_tokens(engine, tiny_store, monkeypatch, bans):
    def run(explainer):
        running = RunningBatch(explainer, max_rows=4)
        waiting = list(enumerate(prepared(explainer, tiny_store, bans)))
        got, step = {}, 0
        while waiting or len(running):
            if waiting and (step % 2 == 0 or not len(running)):
                take, waiting = waiting[: running.free], waiting[running.free :]
                running.join(take)
            for ended in running.step():
                got[ended.key] = ended.generation.candidates
            step += 1
        return got

    want = run(without_candidates(engine))
    reads = LogitReads(engine.backend.decoder, monkeypatch)
    assert run(engine) == want
    assert (reads.count > 0) == (bans == "most")


@pytest.mark.anyio
@pytest.mark.parametrize("continuous", ["off", "on"])
async def test_the_batcher_reports_the_reruns_and_metrics_count_them(
    engine, tiny_store, monkeypatch, continuous
):
    import asyncio
    import time

    from service.batching import DynamicBatcher
    from service.metrics import Metrics
    from tests.unit.service.test_metrics import sample

    metrics = Metrics()
    batcher = DynamicBatcher(
        max_batch_size=4, max_wait_ms=5.0, max_queue=64, observer=metrics, continuous=continuous
    )
    reads = LogitReads(engine.backend.decoder, monkeypatch)
    batcher.start()
    try:
        deadline = time.monotonic() + 60
        rows = prepared(engine, tiny_store, "most")
        await asyncio.gather(*(batcher.submit(row, deadline, engine) for row in rows))
    finally:
        batcher.stop()
    counted = sample(metrics.render()[0].decode(), "prism_decode_logit_reruns_total")
    assert reads.count > 0 and counted == reads.count


def test_finer_scores_of_half_precision_logits_are_rounded_to_them():
    """On CPU, ONNX Runtime computes a float16 graph's candidates in float32: two tokens
    tied in the float16 logits can differ in their scores. Rounded back, the tie is the
    logits' again and the lower id wins, as the argmax over the logits has it."""
    from types import SimpleNamespace

    from explain.decoding import GenerationIds, choose
    from explain.steps import candidates_of

    decoder = SimpleNamespace(
        outputs={artifacts.LOGITS: SimpleNamespace(dtype=np.dtype(np.float16))}
    )
    out = {
        artifacts.TOP_IDS: np.array([[5, 3, 9]]),
        artifacts.TOP_SCORES: np.array([[1.0001, 1.0, 0.5]], dtype=np.float32),
    }
    logits = np.zeros((1, 12), dtype=np.float16)
    logits[0, [5, 3, 9]] = [1.0001, 1.0, 0.5]  # 5 and 3 are both 1.0 in float16
    top = candidates_of(decoder, out, 12)
    ids = GenerationIds(2, 2, 1, None)
    counts = np.array([1])
    assert int(logits[0].astype(np.float32).argmax()) == 3
    assert choose(top, lambda: logits, counts, ids, [()], 0).tolist() == [3]
