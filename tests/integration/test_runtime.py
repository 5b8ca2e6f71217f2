"""The served explainer on the tiny real model: loading, explaining, unknown users, auto-export."""

import shutil

import pytest

from explain.errors import ModelLoadError
from explain.explainer import DecodeSettings
from explain.input_format import FORMAT_VERSION
from explain.items import Item
from explain.session import ProviderError
from explain.types import ExplainJob
from explain.verifier import Verifier
from model_store.store import ModelStore
from service.loader import load_explainer
from training.modeling import PrismMeta

HISTORY = (
    Item("E.T. the Extra-Terrestrial (1982)", "1", {"genres": ["Children's", "Sci-Fi"]}),
    Item("Star Wars (1977)", "2", {"genres": ["Action", "Sci-Fi"]}),
    Item("The Thing (1982)", "3", {"genres": ["Horror", "Sci-Fi"]}),
)
ITEM = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"], "year": 1985})


def engine_for(store_dir, name, ref="latest", **overrides):
    store = ModelStore(store_dir)
    options = {
        "provider": "cpu",
        "intra_op_threads": 1,
        "max_history": 50,
        "max_input_tokens": None,
        "max_new_tokens_limit": 96,
        "decode": DecodeSettings(),
        "auto_export": True,
        "variant": "auto",
    }
    return load_explainer(store, store.resolve(name, ref), **{**options, **overrides})


@pytest.fixture(scope="module")
def engine(tiny_store):
    return engine_for(tiny_store.store_dir, tiny_store.name)


def test_engine_reports_what_it_loaded(engine, tiny_store):
    info = engine.info
    assert (info.name, info.version, info.provider) == (tiny_store.name, tiny_store.version, "cpu")
    assert (
        info.input_format == f"prism-evidence/{FORMAT_VERSION}"
        and info.num_users == 8
        and info.d_model == 64
    )


def test_known_and_unknown_users_both_get_explanations(engine, tiny_store):
    jobs = [
        ExplainJob(tiny_store.known_users[0], HISTORY, ITEM, 12, 1),
        ExplainJob("never-seen", HISTORY, ITEM, 12, 1),
        ExplainJob("never-seen", (), ITEM, 12, 2),
    ]
    prepared = [engine.prepare(job) for job in jobs]
    generated = engine.generate(prepared)
    results = [engine.finish(p, g) for p, g in zip(prepared, generated.generations, strict=True)]
    assert [r.user_known for r in results] == [True, False, False]
    for result in results:
        assert result.text and "<" not in result.text  # every slot filled from the request
        assert 0 < result.output_tokens <= 12 and result.input_tokens > 5
    assert results[0].history_used == 3 and results[2].history_used == 0
    timings = generated.timings
    assert timings.total_s >= timings.encode_s + timings.decode_s > 0
    assert generated.groups == [2, 1]  # one backend call per beam width


def test_the_user_vector_reaches_the_encoder_graph(engine, tiny_store):
    import numpy as np

    ids = np.array([engine.prepare(ExplainJob("u", HISTORY, ITEM, 4, 1)).student.input_ids])
    mask = np.ones_like(ids)
    vectors, known = engine.users.lookup([tiny_store.known_users[0], "never-seen"])
    assert known == [True, False] and not vectors[1].any() and vectors[0].any()
    feeds = {"input_ids": ids, "attention_mask": mask}
    encoder = engine.backend.encoder
    with_user = encoder.run({**feeds, "user_embeds": vectors[:1]})["cross_key_0"]
    zero = encoder.run({**feeds, "user_embeds": vectors[1:]})["cross_key_0"]
    assert not np.allclose(with_user, zero)  # the cross-attention keys move with v_u


def test_on_cpu_a_row_encodes_to_the_same_bits_alone_grouped_or_in_one_call(engine, tiny_store):
    import numpy as np

    from explain.explainer import pad_batch
    from explain.onnx_backend import ENCODE_TOKENS, EncodedBatch

    backend = engine.backend
    assert backend.encode_tokens == ENCODE_TOKENS  # the CPU default: a few requests per call
    long = engine.prepare(ExplainJob("u", HISTORY, ITEM, 4, 1)).student.input_ids
    short = engine.prepare(ExplainJob("u", HISTORY[:1], ITEM, 4, 1)).student.input_ids
    ids, mask = pad_batch([long, short, long], engine.tokenizer.pad_id)
    vectors, _ = engine.users.lookup([tiny_store.known_users[0], "never-seen", "never-seen"])
    batch = EncodedBatch(ids, mask, vectors.astype(np.float32))
    encoded = {}
    try:
        for budget in (0, ENCODE_TOKENS, None):  # one per call, grouped, the whole batch
            backend.encode_tokens = budget
            encoded[budget] = backend.encode(batch)
    finally:
        backend.encode_tokens = ENCODE_TOKENS
    n = len(short)
    assert n < len(long)
    alone, grouped, together = encoded[0], encoded[ENCODE_TOKENS], encoded[None]
    for name in backend.cross_names:
        assert alone[name].shape == grouped[name].shape == together[name].shape
        np.testing.assert_array_equal(alone[name], grouped[name])
        for row, length in enumerate((len(long), n, len(long))):
            np.testing.assert_array_equal(
                alone[name][row, :, :length], together[name][row, :, :length]
            )
        assert not alone[name][1, :, n:].any()  # padding is never kept: masked zeros


def test_encoder_calls_group_similar_lengths_within_the_budget():
    from explain.onnx_backend import encoder_calls

    assert encoder_calls([120, 5, 100, 7], 0) == [[1], [3], [2], [0]]
    assert encoder_calls([120, 5, 100, 7], 240) == [[1, 3], [2, 0]]
    assert encoder_calls([120, 5, 100, 7], 10_000) == [[1, 3, 2, 0]]
    assert encoder_calls([300], 240) == [[0]]  # longer than the budget: a call of its own
    assert encoder_calls([], 240) == []


def test_batching_does_not_change_results(engine, tiny_store):
    alone = engine.explain([ExplainJob("u", HISTORY, ITEM, 10, 1)])[0]
    mixed = engine.explain(
        [
            ExplainJob(tiny_store.known_users[1], HISTORY[:1], ITEM, 5, 1),
            ExplainJob("u", HISTORY, ITEM, 10, 1),
        ]
    )[1]
    assert alone == mixed


def test_service_limits_tighten_the_models_own(tiny_store):
    tight = engine_for(tiny_store.store_dir, tiny_store.name, max_history=2, max_input_tokens=64)
    assert tight.input_config.max_history == 2 and tight.input_config.max_input_tokens == 64
    result = tight.explain([ExplainJob("u", HISTORY, ITEM, 4, 1)])[0]
    assert result.history_used <= 2 and result.input_tokens <= 64


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="this onnxruntime build has the CUDA provider",
)
def test_cuda_request_fails_loudly_without_a_cuda_build(tiny_store):
    with pytest.raises(ProviderError, match="cuda"):
        engine_for(tiny_store.store_dir, tiny_store.name, provider="cuda")


def test_a_version_without_onnx_is_exported_once_and_cached(tiny_model_dir, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(tiny_model_dir, source)
    meta = PrismMeta.load(source)
    store = ModelStore(tmp_path / "store")
    fields = {
        "base_model": meta.base_model,
        "input_format": meta.input_format,
        "d_model": meta.d_model,
        "num_users": meta.num_users,
        "generation": meta.generation,
    }
    store.publish("raw", source, manifest_fields=fields)
    with pytest.raises(ModelLoadError, match="no ONNX artifacts"):
        engine_for(store.root, "raw", auto_export=False)
    engine = engine_for(store.root, "raw")
    manifest = store.resolve("raw", "latest").manifest
    assert manifest.parity_passed
    assert "onnx/encoder.onnx" in manifest.files
    assert engine.explain([ExplainJob("u", HISTORY, ITEM, 4, 1)])[0].text


@pytest.mark.parametrize(
    ("written", "defect"),
    [
        (" . ,", "no_words"),  # only punctuation and spaces
        ("<item> captures the  feel right ways.", "dangling_slot"),
        ("You have a taste for the <item> is the same same vein.", "stutter"),
    ],
)
def test_an_unusable_answer_is_replaced_by_the_evidence_sentence(
    tiny_store, monkeypatch, written, defect
):
    engine = engine_for(tiny_store.store_dir, tiny_store.name)
    # Fault injection: the decoder "wrote" this template.
    monkeypatch.setattr(engine.tokenizer, "decode", lambda ids: written)
    result = engine.explain([ExplainJob("u", HISTORY, ITEM, 8, 1)])[0]
    assert result.fallback and result.fallback_reason == defect
    assert result.text == "Back to the Future shares sci-fi with The Thing, which you watched."


def test_a_token_limit_beyond_the_model_is_refused_at_load(tiny_store):
    # The tiny model has 320 decoder positions: at most 319 new tokens.
    with pytest.raises(ModelLoadError, match="PRISM_MAX_NEW_TOKENS_LIMIT 400"):
        engine_for(tiny_store.store_dir, tiny_store.name, max_new_tokens_limit=400)


def test_a_request_beyond_the_model_fails_alone(engine):
    from explain.errors import PrepareError

    with pytest.raises(PrepareError, match="exceeds the model's limit"):
        engine.prepare(ExplainJob("u", HISTORY, ITEM, 10_000, 1))


GOOD = "<item> is a <g1> film, like others you have watched."


def test_a_refused_first_answer_gets_a_beam_second_pass(tiny_store, monkeypatch):
    engine = engine_for(tiny_store.store_dir, tiny_store.name)
    written = iter(["<item> is a fresh pick that could widen your taste.", GOOD])
    monkeypatch.setattr(engine.tokenizer, "decode", lambda ids: next(written, GOOD))
    (result,) = engine.explain([ExplainJob("u", HISTORY, ITEM, 8, 1)])
    assert not result.fallback and result.candidates_tried == 2
    assert result.text == "Back to the Future is a sci-fi film, like others you have watched."
    assert result.evidence == (
        {
            "claim": "shared_genre",
            "genre": "Sci-Fi",
            "share": "3/3",
            "strength": "strong",
            "history": ["The Thing", "Star Wars", "E.T. the Extra-Terrestrial"],
        },
    )


def test_when_no_candidate_passes_the_checked_evidence_sentence_is_served(tiny_store, monkeypatch):
    engine = engine_for(tiny_store.store_dir, tiny_store.name)
    monkeypatch.setattr(engine.tokenizer, "decode", lambda ids: GOOD)
    engine.verifier = Verifier(frozenset({"a sentence the model never writes."}))
    (result,) = engine.explain([ExplainJob("u", HISTORY, ITEM, 8, 1)])
    assert result.fallback and result.fallback_reason == "unknown_sentence"
    assert result.candidates_tried == 1 + engine.decode.candidates
    assert result.text == "Back to the Future shares sci-fi with The Thing, which you watched."
    assert [e["claim"] for e in result.evidence] == ["shared_genre", "similar_title"]


def test_the_spinning_setting_reaches_the_served_sessions(tiny_store, monkeypatch):
    from explain import session as session_module
    from service.loader import load_served_explainer
    from service.settings import Settings

    monkeypatch.setattr(session_module, "_spinning", ["run"])
    store = ModelStore(tiny_store.store_dir)
    version = store.resolve(tiny_store.name, "production")
    for mode, expected in (("off", "0"), ("run", "1")):
        settings = Settings(provider="cpu", intra_op_spinning=mode, auto_export=False)
        explainer = load_served_explainer(store, version, settings)
        for graph in (explainer.backend.encoder, explainer.backend.decoder):
            options = graph._session.get_session_options()
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
