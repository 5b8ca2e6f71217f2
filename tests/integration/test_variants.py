"""Precision variants on the tiny real model: built at publish, gated, recorded, served."""

import shutil
from pathlib import Path

import pytest

from explain.errors import ModelLoadError
from model_store.store import ModelStore
from training.parity import probe_jobs
from training.publishing import publish_model
from training.variant_graphs import IN_PLACE, KEYS_8, PER_TOKEN_RECIPES, SVD_HEADS
from training.variants import (
    BLOCKS,
    DYNAMIC_ENCODER,
    INT8_RECIPES,
    MIN_IDENTICAL,
    PER_TOKEN,
    PER_TOKEN_SPLIT,
    PER_TOKEN_SPLIT_DECODER_V8,
    PER_TOKEN_SPLIT_V8,
    PER_TOKEN_V8,
    SVD_HEAD_K8_LEAN,
    VariantCheck,
    build_variant,
    gate_variants,
)

from .test_runtime import engine_for

USERS = [f"user-{k}" for k in range(1, 9)]


def every_answer_present(jobs):
    """A quality bar computed from the answers: the variant answered every request."""

    def bars(answers):
        answered = sum(bool(a.text) for a in answers)
        return {"answered_rate": {"value": answered / len(jobs), "passed": answered == len(jobs)}}

    return bars


@pytest.fixture(scope="module")
def variant_store(tiny_model_dir, tmp_path_factory):
    source = tmp_path_factory.mktemp("variant-src") / "model"
    shutil.copytree(tiny_model_dir, source)
    root = tmp_path_factory.mktemp("variant-store")
    jobs = probe_jobs(USERS, 24, 16)
    version, report = publish_model(
        ModelStore(root),
        "prism-tiny",
        source,
        eval_metrics={},
        variant_check=VariantCheck(jobs, every_answer_present(jobs)),
    )
    assert report.passed
    return root, version


def test_publish_records_each_variant_with_its_gate(variant_store):
    _, version = variant_store
    variants = version.manifest.variants
    assert set(variants) == {"int8", "fp16"}
    for name, v in variants.items():
        assert v.compared == 24 and 0.0 <= v.tokens_identical <= 1.0
        assert v.bars_passed is True and v.failed_bars == []
        assert v.servable == (v.sequences_identical >= MIN_IDENTICAL)
        assert (v.reason == "") == v.servable
        # the graphs are part of the version: listed, checksummed and verified on resolve
        assert version.has_file(v.encoder) and version.has_file(v.decoder), name
        assert (version.path / v.decoder).stat().st_size > 0


def test_a_failing_quality_bar_makes_a_variant_unservable(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    from training.export import export_onnx
    from training.modeling import UserAwareBart

    export_onnx(UserAwareBart.load(model_dir), model_dir / "onnx")
    jobs = probe_jobs(USERS, 6, 8)

    def strict(answers):
        return {"fallback_rate": {"value": 1.0, "passed": False}}

    records = gate_variants(model_dir, VariantCheck(jobs, strict), variants=("fp16",))
    fp16 = records["fp16"]
    assert fp16["servable"] is False and fp16["failed_bars"] == ["fallback_rate"]
    assert "quality bars failed: fallback_rate" in fp16["reason"]
    unjudged = gate_variants(model_dir, VariantCheck(jobs), variants=("fp16",))["fp16"]
    assert unjudged["servable"] is False and unjudged["bars_passed"] is None
    assert "quality bars not run" in unjudged["reason"]


def _exported(tiny_model_dir, tmp_path):
    from training.export import export_onnx
    from training.modeling import UserAwareBart

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    export_onnx(UserAwareBart.load(model_dir), model_dir / "onnx")
    return model_dir


def int8_explainer(tiny_model_dir, tmp_path, recipe):
    """The tiny model exported, its int8 variant built by `recipe`, loaded to serve."""
    from explain import artifacts
    from explain.input_format import check_format
    from explain.loading import load_onnx_explainer
    from training.modeling import PrismMeta

    model_dir = _exported(tiny_model_dir, tmp_path)
    build_variant(artifacts.INT8, model_dir / "onnx", recipe)
    meta = PrismMeta.load(model_dir)
    return load_onnx_explainer(
        model_dir,
        name="prism-tiny",
        version=recipe,
        input_config=check_format(meta.input_format),
        generation=meta.generation,
        variant=artifacts.INT8,
        servable=artifacts.VARIANTS,
    )


def test_int8_records_the_recipe_its_gate_kept(variant_store):
    _, version = variant_store
    int8 = version.manifest.variants["int8"]
    assert int8.recipe in INT8_RECIPES
    # The faster recipe is tried first: anything kept after it says why it was refused.
    assert len(int8.refused) == INT8_RECIPES.index(int8.recipe)
    for refused, recipe in zip(int8.refused, INT8_RECIPES, strict=False):
        assert refused.startswith(f"{recipe}: ")
    assert "int8" in version.manifest.variants["int8"].method


def test_a_refused_int8_recipe_falls_back_to_the_next_and_says_why(tiny_model_dir, tmp_path):
    model_dir = _exported(tiny_model_dir, tmp_path)
    jobs = probe_jobs(USERS, 6, 8)
    verdicts = iter([False, True])  # the first recipe judged fails a bar, the next passes

    def bars(answers):
        return {"fallback_rate": {"value": 0.0, "passed": next(verdicts)}}

    check = VariantCheck(jobs, bars, int8_recipes=(PER_TOKEN, BLOCKS))
    records = gate_variants(model_dir, check, variants=("int8",))
    int8 = records["int8"]
    assert int8["recipe"] == BLOCKS
    [refused] = int8["refused"]
    assert refused.startswith(f"{PER_TOKEN}: ")
    assert refused.endswith("quality bars failed: fallback_rate")
    assert "MatMulNBits int8 weights" in int8["method"]


@pytest.mark.parametrize(
    "recipe",
    PER_TOKEN_RECIPES,
)
def test_the_per_token_recipes_make_every_weighted_matmul_an_integer_gemm(
    tiny_model_dir, tmp_path, recipe
):
    import onnx

    from explain import artifacts
    from training.int8_split import GROUPS
    from training.modeling import UserAwareBart

    config = UserAwareBart.load(tiny_model_dir).config
    model_dir = _exported(tiny_model_dir, tmp_path)
    encoder, decoder = build_variant(artifacts.INT8, model_dir / "onnx", recipe)
    for path, layers in ((encoder, config.encoder_layers), (decoder, config.decoder_layers)):
        graph = onnx.load(str(path)).graph
        constants = {i.name for i in graph.initializer}
        ops = [n.op_type for n in graph.node]
        # split: every layer's second feed-forward product in GROUPS slices, summed; the
        # slices are quantised together, then split with their scales
        split = recipe in (PER_TOKEN_SPLIT, PER_TOKEN_SPLIT_V8) or (
            recipe in (PER_TOKEN_SPLIT_DECODER_V8, *SVD_HEADS) and path == decoder
        )
        assert ops.count("Sum") == (layers if split else 0)
        assert ops.count("Split") == (2 * layers if split else 0)
        # one quantising pass per distinct activation: a layer's query, key and value share
        # theirs, and so do the cross key/value projections of the encoder's output
        passes = 6 * layers + 1 if path == decoder else 4 * layers + 1
        # v8: the encoder quantises each decoder layer's cross values, the decoder each
        # layer's attention weights, for one integer product per decoder layer
        v8 = (PER_TOKEN_SPLIT_V8, PER_TOKEN_SPLIT_DECODER_V8, PER_TOKEN_V8, *SVD_HEADS)
        values = config.decoder_layers if recipe in v8 else 0
        # k8: the keys as well (the encoder quantises them, the decoder each layer's query)
        keys = config.decoder_layers if recipe in KEYS_8 else 0
        passes += values + keys
        if recipe in SVD_HEADS and path == decoder:
            passes += 1  # the low-rank preview's second factor reads the first's output
        assert ops.count("MatMulInteger") == (values + keys if path == decoder else 0)
        key_kinds = {
            i.type.tensor_type.elem_type
            for i in (*graph.input, *graph.output)
            if i.name.startswith("cross_key_") and not i.name.startswith("cross_key_scale")
        }
        assert key_kinds == ({onnx.TensorProto.UINT8} if keys else {onnx.TensorProto.FLOAT})
        kinds = {
            i.name: i.type.tensor_type.elem_type
            for i in (*graph.input, *graph.output)
            if i.name.startswith("cross_value_")
        }
        assert set(kinds.values()) == (
            {onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT} if values else {onnx.TensorProto.FLOAT}
        )
        assert len(kinds) == config.decoder_layers * (2 if values else 1)
        # inplace: the decoder's self-attention one GroupQueryAttention a layer over its
        # in-place cache, the longest row's length found by one more ReduceMax
        fused = recipe in IN_PLACE
        gqa = layers if fused and path == decoder else 0
        assert ops.count("GroupQueryAttention") == gqa
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert (props.get(artifacts.SELF_ATTENTION_CACHE) == artifacts.IN_PLACE) == bool(gqa)
        # and the decoder takes the cross keys [batch, heads, head_dim, src]: one query row
        # times src columns (the encoder still returns [batch, heads, src, head_dim])
        turned = props.get(artifacts.CROSS_KEY_LAYOUT) == artifacts.KEYS_TRANSPOSED
        assert turned == bool(gqa)
        head_dim = config.d_model // config.decoder_attention_heads
        if turned:
            [keys] = [i for i in graph.input if i.name == "cross_key_0"]
            assert keys.type.tensor_type.shape.dim[2].dim_value == head_dim
        assert ops.count("QuantizeLinear") == ops.count("ReduceMax") - bool(gqa) == passes
        products = 4 * layers + 2 * layers  # attention and feed-forward
        if path == decoder:
            products += 2 * layers + 1  # cross query/output, and the LM head
            products += 1 if recipe in SVD_HEADS else 0  # the preview's two factors
        else:
            products += 2 * config.decoder_layers  # the cross key/value projections
        products += (GROUPS - 1) * layers if split else 0
        # lean: the decoder's query, key and value in one product a layer, fed whole to its
        # GroupQueryAttention (no Split, no Mul: the scale is the op's); the logits' scatter
        # only inside an If on `want_logits`
        lean = recipe == SVD_HEAD_K8_LEAN and path == decoder
        products -= 2 * layers if lean else 0
        assert ops.count("MatMulIntegerToFloat") == products
        assert ops.count("If") == int(lean)
        assert (artifacts.WANT_LOGITS in {i.name for i in graph.input}) == lean
        if lean:
            attention = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
            assert all(list(n.input[1:3]) == ["", ""] for n in attention)
            head_dim_scale = (config.d_model // config.decoder_attention_heads) ** -0.5
            assert all(
                onnx.helper.get_attribute_value(a) == pytest.approx(head_dim_scale)
                for n in attention
                for a in n.attribute
                if a.name == "scale"
            )
        assert not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
        assert "MatMulNBits" not in ops
        # the decoder's LM head rescores its best candidates against the int8 table, and its
        # next-token candidates come last, picked from the rescored ones and the next best
        # approximate scores of the head's own (widened) TopK: one pass over the vocabulary
        scatters = [n for n in graph.node if n.op_type == "ScatterElements"]
        if lean:
            [wrapped] = [n for n in graph.node if n.op_type == "If"]
            scatters = [n for a in wrapped.attribute if a.g.node for n in a.g.node]
            scatters = [n for n in scatters if n.op_type == "ScatterElements"]
        assert len(scatters) == (1 if path == decoder else 0)
        assert ops.count("TopK") == (2 if path == decoder else 0)
        if path == decoder:
            tops = [n for n in graph.node if n.op_type == "TopK"]
            assert tops[0].input[0] == "prism.q.head.approx"
            assert tops[1].input[0] == "prism.candidates.pool"
            assert graph.node[-1].op_type == "GatherElements"
            assert graph.node[-1].output[0] == artifacts.TOP_IDS
            assert [o.name for o in graph.output][-2:] == [artifacts.TOP_SCORES, artifacts.TOP_IDS]
        # int8 embedding rows, scaled back after the lookup (one scale per row)
        tables = [t for t in graph.initializer if t.name == artifacts.SHARED_EMBEDDING]
        assert [t.data_type for t in tables] == [onnx.TensorProto.INT8]


@pytest.mark.parametrize(
    "recipe",
    [*PER_TOKEN_RECIPES, DYNAMIC_ENCODER],
)
def test_an_int8_answer_does_not_depend_on_its_batch_mates(tiny_model_dir, tmp_path, recipe):
    from explain import artifacts

    explainer = int8_explainer(tiny_model_dir, tmp_path, recipe)
    # The graph says how it scales; a per-call encoder runs one request per call.
    per_call = explainer.backend.encoder.metadata[artifacts.ACTIVATION_SCALES] == artifacts.PER_CALL
    assert per_call == (recipe == DYNAMIC_ENCODER)
    assert (explainer.backend.encode_tokens == 0) == per_call
    jobs = probe_jobs(USERS, 12, 8)
    alone = [explainer.explain_all([job])[0].token_ids for job in jobs]
    together = [a.token_ids for a in explainer.explain_all(jobs)]
    assert alone == together
    if recipe != DYNAMIC_ENCODER:  # per-token scales: even a padded batch encoded at once agrees
        explainer.backend.encode_tokens = None
        assert [a.token_ids for a in explainer.explain_all(jobs)] == alone


def test_the_service_serves_what_the_gate_allows(variant_store):
    root, version = variant_store
    variants = version.manifest.variants
    servable = {name for name, v in variants.items() if v.servable}
    auto = engine_for(root, "prism-tiny", version.version, variant="auto")
    assert auto.info.variant == ("int8" if "int8" in servable else "fp32")
    for name in ("int8", "fp16"):
        if name in servable:
            assert (
                engine_for(root, "prism-tiny", version.version, variant=name).info.variant == name
            )
        else:
            with pytest.raises(ModelLoadError, match=f"{name} variant did not pass its gate"):
                engine_for(root, "prism-tiny", version.version, variant=name)


def test_a_variant_answers_like_fp32_where_it_agrees(variant_store):
    root, version = variant_store
    fp32 = engine_for(root, "prism-tiny", version.version, variant="fp32")
    from explain import artifacts

    # Load each variant regardless of its gate (what the benchmarks do) and compare.
    for name in ("int8", "fp16"):
        from explain.input_format import check_format
        from explain.loading import load_onnx_explainer

        candidate = load_onnx_explainer(
            Path(version.path),
            name="prism-tiny",
            version=version.version,
            input_config=check_format(version.manifest.input_format.model_dump()),
            generation=version.manifest.generation,
            variant=name,
            servable=artifacts.VARIANTS,
        )
        assert candidate.info.variant == name
        jobs = probe_jobs(USERS, 24, 16)
        same = sum(
            a.token_ids == b.token_ids
            for a, b in zip(fp32.explain_all(jobs), candidate.explain_all(jobs), strict=True)
        )
        assert same / len(jobs) == pytest.approx(
            version.manifest.variants[name].sequences_identical, abs=1e-3
        )


@pytest.mark.e2e
def test_a_live_server_says_which_variant_it_serves_and_refuses_one_that_failed(
    variant_store, tmp_path
):
    import httpx

    from tests.conftest import PublishedModel, start_server, stop_server

    root, version = variant_store
    gates = version.manifest.variants
    published = PublishedModel(root, "prism-tiny", version.version, tuple(USERS))
    server = start_server(published, tmp_path, env={"PRISM_VARIANT": "auto"})
    try:
        card = httpx.get(f"{server.base_url}/v1/models", timeout=10).json()["models"][0]
        answer = httpx.post(
            f"{server.base_url}/v1/explanations",
            json={"user_id": "user-1", "recommended_item": {"title": "Heat (1995)"}},
            timeout=30,
        )
    finally:
        stop_server(server)
    assert card["variant"] == ("int8" if gates["int8"].servable else "fp32")
    assert {k: v["servable"] for k, v in card["variants"].items()} == {
        k: v.servable for k, v in gates.items()
    }
    assert card["variants"]["fp16"]["compared"] == 24
    assert answer.status_code == 200 and answer.json()["explanation"]
    unservable = [k for k, v in gates.items() if not v.servable]
    if unservable:  # the tiny random model misses the gate: asking for it by name exits
        with pytest.raises(RuntimeError, match=f"{unservable[0]} variant did not pass its gate"):
            start_server(published, tmp_path, env={"PRISM_VARIANT": unservable[0]})
