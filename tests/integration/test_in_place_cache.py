"""The in-place self-attention cache (`training.int8_fused`, `explain.kv_cache`) on the tiny
real model: its fp32 decoder rewritten to `GroupQueryAttention` answers as the exported one,
greedy and with beams, in static batches and in a running decode."""

import dataclasses
import shutil

import numpy as np
import onnx
import pytest

from explain import artifacts
from explain.continuous import RunningBatch, joinable
from explain.kv_cache import InPlaceCache, in_place
from explain.types import ExplainJob
from training.parity import probe_jobs

from .test_continuous import jobs

USERS = [f"user-{k}" for k in range(1, 9)]


def _explainer(model_dir):
    from explain.input_format import check_format
    from explain.loading import load_onnx_explainer
    from training.modeling import PrismMeta

    meta = PrismMeta.load(model_dir)
    return load_onnx_explainer(
        model_dir,
        name="prism-tiny",
        version="in-place",
        input_config=check_format(meta.input_format),
        generation=meta.generation,
        variant=artifacts.FP32,
        servable=artifacts.VARIANTS,
    )


@pytest.fixture(scope="module")
def pair(tiny_model_dir, tmp_path_factory):
    """(the exported fp32 graphs, the same with the decoder's self-attention in place)."""
    from training.export import export_onnx
    from training.int8_fused import in_place_self_attention
    from training.modeling import UserAwareBart

    exported = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(tiny_model_dir, exported)
    export_onnx(UserAwareBart.load(exported), exported / "onnx")
    rewritten = tmp_path_factory.mktemp("in-place") / "model"
    shutil.copytree(exported, rewritten)
    path = rewritten / artifacts.DECODER_PATH
    model = onnx.load(str(path))
    layers = in_place_self_attention(model)
    onnx.save(model, str(path))
    return _explainer(exported), _explainer(rewritten), layers


def test_the_rewrite_fuses_each_layer_and_drops_the_reorder_inputs(pair):
    reference, fused, layers = pair
    assert layers == reference.backend.spec.decoder_layers
    decoder = fused.backend.decoder
    assert in_place(decoder) and not in_place(reference.backend.decoder)
    graph = onnx.load(str(decoder.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("GroupQueryAttention") == layers
    assert "Concat" not in {n.op_type for n in graph.node if n.output[0].startswith("present_")}
    assert {"beam_idx", "decoder_attention_mask"} & set(decoder.inputs) == set()
    assert joinable(fused)


@pytest.mark.parametrize("beams", [1, 3])
def test_in_place_answers_are_the_exported_graphs(pair, beams):
    reference, fused, _ = pair
    work = [dataclasses.replace(j, num_beams=beams) for j in probe_jobs(USERS, 12, 10)]
    # alone and in one batch: rows of different lengths share the buffers
    expected = [a.token_ids for a in reference.explain_all(work)]
    assert [a.token_ids for a in fused.explain_all(work)] == expected
    assert [fused.explain_all([job])[0].token_ids for job in work[:4]] == expected[:4]


def test_rows_joining_and_leaving_keep_their_own_cache(pair, tiny_store):
    reference, fused, _ = pair
    work = [*jobs(tiny_store), ExplainJob(USERS[0], (), jobs(tiny_store)[0].item, 25, 1)]
    expected = {}
    for k, job in enumerate(work):
        prepared = reference.prepare(job)
        expected[k] = reference.generate([prepared]).generations[0].candidates
    running = RunningBatch(fused, max_rows=3)
    assert running.in_place
    got = {}
    for k, job in enumerate(work):  # one joins every other step; ended rows move up
        while not running.free:
            got.update({e.key: e.generation.candidates for e in running.step()})
        running.join([(k, fused.prepare(job))])
        got.update({e.key: e.generation.candidates for e in running.step()})
    while len(running):
        got.update({e.key: e.generation.candidates for e in running.step()})
    assert got == expected
    assert running.cache is None  # the buffers went with the last row


def test_the_buffer_grows_moves_and_reorders_rows_on_the_host(pair):
    _, fused, _ = pair
    decoder = fused.backend.decoder
    cache = InPlaceCache(decoder, 1, 3, 2)
    (name,) = [n for n in cache.buffers if n.startswith("past_key")]
    rows = np.arange(3, dtype=np.float32)[:, None, None, None]
    cache.buffers[name][:] = rows + 10 * np.arange(2, dtype=np.float32)[None, None, :, None]
    before = cache.buffers[name].copy()
    cache.ensure_columns(3)
    assert cache.columns >= 32 and np.array_equal(cache.buffers[name][:, :, :2], before)
    assert not cache.buffers[name][:, :, 2:].any()
    cache.reorder(np.array([2, 2, 0]), 2)
    assert cache.buffers[name][:, 0, 1, 0].tolist() == [12.0, 12.0, 10.0]
    cache.move_rows([2])
    assert cache.buffers[name][0, 0, :2, 0].tolist() == [0.0, 10.0]
    bound = cache.bindings(2)
    present, value = bound[name]
    assert present.startswith("present_key") and value.shape() == [
        2,
        *cache.buffers[name].shape[1:],
    ]


@pytest.mark.parametrize("beams", [1, 3])
def test_the_int8_recipe_answers_as_the_one_it_rewrites(tiny_model_dir, tmp_path, beams):
    """`svd-head-k8-inplace` is `svd-head-k8` with the cache written in place and the cross
    keys turned: the same sums, so the same answers (on the default model all 1,960 gate
    answers were). A key stored in the wrong layout, or a cache row left behind, changes them."""
    from explain.artifacts import SVD_HEAD_K8, SVD_HEAD_K8_INPLACE

    from .test_variants import int8_explainer

    rewritten = int8_explainer(tiny_model_dir, tmp_path / "inplace", SVD_HEAD_K8_INPLACE)
    source = int8_explainer(tiny_model_dir, tmp_path / "k8", SVD_HEAD_K8)
    assert rewritten.backend.transposed and in_place(rewritten.backend.decoder)
    work = [dataclasses.replace(j, num_beams=beams) for j in probe_jobs(USERS, 16, 12)]
    assert [a.token_ids for a in rewritten.explain_all(work)] == [
        a.token_ids for a in source.explain_all(work)
    ]


@pytest.mark.parametrize("beams", [1, 3])
def test_the_lean_recipe_answers_as_the_in_place_one(tiny_model_dir, tmp_path, beams):
    """`svd-head-k8-lean` packs each decoder layer's query, key and value into one product and
    writes the full logits only on request: the same sums, so the same answers; a step that
    asks for its logits (a ban the candidates cannot settle) gets the in-place recipe's."""
    from explain.artifacts import SVD_HEAD_K8_INPLACE, SVD_HEAD_K8_LEAN
    from explain.steps import CachedSteps

    from .test_variants import int8_explainer

    lean = int8_explainer(tiny_model_dir, tmp_path / "lean", SVD_HEAD_K8_LEAN)
    source = int8_explainer(tiny_model_dir, tmp_path / "inplace", SVD_HEAD_K8_INPLACE)
    assert artifacts.WANT_LOGITS in lean.backend.decoder.inputs
    work = [dataclasses.replace(j, num_beams=beams) for j in probe_jobs(USERS, 16, 12)]
    assert [a.token_ids for a in lean.explain_all(work)] == [
        a.token_ids for a in source.explain_all(work)
    ]
    logits = []
    for engine in (lean, source):
        backend = engine.backend
        ids = np.array([[0, 11, 12, 13, 2], [0, 21, 22, 2, 1]], dtype=np.int64)
        mask = (ids != 1).astype(np.int64)
        from explain.onnx_backend import EncodedBatch

        batch = EncodedBatch(ids, mask, np.zeros((2, backend.spec.d_model), np.float32))
        steps = CachedSteps(
            backend.decoder,
            mask,
            backend.encode(batch),
            backend.spec.decoder_layers,
            backend.spec.vocab_size,
            columns=4,
        )
        start = np.zeros(2, dtype=np.int64)
        top = steps.step_top(start, np.arange(2))
        full = steps.last_logits()
        assert full.shape == (2, backend.spec.vocab_size)
        assert top is not None
        logits.append(full)
    np.testing.assert_array_equal(logits[0], logits[1])
