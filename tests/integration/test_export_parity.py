"""Export + parity on the tiny real model: ORT tokens equal PyTorch `generate` tokens."""

import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from model_store import onnx_spec as spec
from model_store.modeling import (
    PrismMeta,
    UserAwareBart,
    banned_slot_matrix,
    plain_generation_config,
)
from model_store.parity import check_parity, probe_requests
from model_store.prompt import build_input, check_format
from model_store.publishing import export_with_parity, publish_model
from model_store.store import ModelStore, PromotionError
from model_store.tokenizer import PrismTokenizer
from service.runtime.explainer import pad_batch
from service.runtime.generator import GenerationIds, Seq2SeqGenerator
from service.runtime.session import OnnxSession


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    onnx_dir = tmp_path_factory.mktemp("onnx")
    report = export_with_parity(tiny_model_dir, onnx_dir)
    return onnx_dir, report


def test_greedy_parity_on_known_and_unknown_users(exported):
    _, report = exported
    assert report.passed, report
    assert report.num_inputs >= 20 and report.num_known >= 10 and report.num_unknown >= 10
    # The weights produce real sequences, not EOS right after BOS.
    assert report.informative and report.mean_generated > 8


def test_unknown_user_is_exactly_stock_bart(tiny_model_dir):
    model = UserAwareBart.load(tiny_model_dir)
    ids = torch.tensor([[0, 10, 11, 12, 2]])
    embeds = model.embed(ids, torch.tensor([0]))
    torch.testing.assert_close(embeds, model.bart.model.encoder.embed_tokens(ids))
    assert torch.count_nonzero(model.user_embeddings.weight[0]) == 0


def _generators(onnx_dir):
    onnx_spec = spec.OnnxSpec.load(onnx_dir)
    enc = OnnxSession(onnx_dir / spec.ENCODER_FILE, provider="cpu")
    dec = OnnxSession(onnx_dir / spec.DECODER_FILE, provider="cpu")
    return onnx_spec, enc, dec


@pytest.mark.parametrize(("num_beams", "min_new_tokens"), [(1, 6), (2, 0), (4, 0), (4, 6)])
def test_beam_search_matches_transformers_and_io_binding_matches_numpy(
    tiny_model_dir, exported, num_beams, min_new_tokens
):
    onnx_dir, _ = exported
    model = UserAwareBart.load(tiny_model_dir)
    tok = PrismTokenizer.from_file(tiny_model_dir / "tokenizer")
    meta = PrismMeta.load(tiny_model_dir)
    config = check_format(meta.input_format)
    built = [build_input(h, i, tok, config) for h, i in probe_requests(6, seed=5)]
    ids, mask = pad_batch([b.input_ids for b in built], tok.pad_id)
    rows = torch.tensor([1, 0, 2, 0, 3, 0])
    users = model.user_vectors(rows).detach().numpy()
    banned = [tok.banned_slot_ids(b.slot_values) for b in built]
    ref = model.generate(
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        rows,
        generation_config=plain_generation_config(
            meta.generation, num_beams=num_beams, min_new_tokens=min_new_tokens
        ),
        banned_tokens=banned_slot_matrix(
            tok, [b.slot_values for b in built], model.bart.config.vocab_size
        ),
        max_new_tokens=16,
    )
    onnx_spec, enc, dec = _generators(onnx_dir)
    ids_cfg = GenerationIds.from_manifest(meta.generation)
    outputs = []
    for io_binding in (False, True):
        gen = Seq2SeqGenerator(enc, dec, onnx_spec, ids_cfg, io_binding=io_binding)
        outputs.append(
            gen.generate(
                ids,
                mask,
                users,
                max_new_tokens=[16] * 6,
                num_beams=num_beams,
                banned=banned,
                min_new_tokens=min_new_tokens,
            ).tokens
        )
    expected = [[int(t) for t in row[1:] if int(t) != tok.pad_id] for row in ref]
    assert outputs[0] == expected
    assert outputs[1] == outputs[0]


def test_per_row_limits_and_bans_are_honoured(tiny_model_dir, exported):
    onnx_dir, _ = exported
    tok = PrismTokenizer.from_file(tiny_model_dir / "tokenizer")
    meta = PrismMeta.load(tiny_model_dir)
    onnx_spec, enc, dec = _generators(onnx_dir)
    gen = Seq2SeqGenerator(enc, dec, onnx_spec, GenerationIds.from_manifest(meta.generation))
    built = [build_input(h, i, tok, check_format(meta.input_format)) for h, i in probe_requests(3)]
    ids, mask = pad_batch([b.input_ids for b in built], tok.pad_id)
    every_slot = list(tok.slot_ids.values())
    out = gen.generate(
        ids,
        mask,
        np.zeros((3, onnx_spec.d_model), np.float32),
        max_new_tokens=[3, 7, 11],
        banned=[every_slot] * 3,
    )
    assert [len(t) <= n for t, n in zip(out.tokens, [3, 7, 11], strict=True)] == [True] * 3
    assert all(t[0] == tok.bos_id for t in out.tokens)
    assert not set(every_slot) & {t for row in out.tokens for t in row}


def test_altered_graph_fails_parity_and_is_never_promoted(tiny_model_dir, exported, tmp_path):
    onnx_dir, _ = exported
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    shutil.copytree(onnx_dir, broken / "onnx")
    graph = onnx.load(str(broken / "onnx" / spec.DECODER_FILE))
    # Perturb the largest weight matrix of the decoder graph.
    target = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))
    values = numpy_helper.to_array(target).copy()
    values += np.random.default_rng(0).normal(0, 1.0, values.shape).astype(values.dtype)
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    onnx.save(graph, str(broken / "onnx" / spec.DECODER_FILE))
    model = UserAwareBart.load(broken)
    tok = PrismTokenizer.from_file(broken / "tokenizer")
    meta = PrismMeta.load(broken)
    report = check_parity(
        model,
        tok,
        broken / "onnx",
        meta.generation,
        check_format(meta.input_format),
        user_rows=[1, 2],
    )
    assert not report.passed and report.mismatches > 0 and report.first_mismatch

    store = ModelStore(tmp_path / "store")
    fields = {
        "base_model": "x",
        "input_format": meta.input_format,
        "d_model": meta.d_model,
        "num_users": meta.num_users,
        "generation": meta.generation,
        "parity": report.to_dict(),
    }
    published = store.publish("broken", broken, manifest_fields=fields)
    with pytest.raises(PromotionError):
        store.set_alias("broken", "production", published.version)


def test_publish_model_promotes_only_after_parity(tiny_model_dir, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(tiny_model_dir, source)
    store = ModelStore(tmp_path / "store")
    version, report = publish_model(store, "m", source, eval_metrics={"bleu4": 0.1})
    assert report.passed
    assert store.aliases("m") == {"latest": version.version, "production": version.version}
    manifest = store.resolve("m").manifest
    assert manifest.parity["passed"] and manifest.eval == {"bleu4": 0.1}
    assert {f"onnx/{f}" for f in (spec.ENCODER_FILE, spec.DECODER_FILE, spec.SPEC_FILE)} <= set(
        manifest.files
    )
