"""The lean decoder rewrites (`training.int8_lean`): fewer nodes, the same bits."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from explain import artifacts
from explain.session import OnnxSession
from training.int8_lean import (
    drop_zero_bias,
    logits_on_request,
    pack_products,
    pack_self_attention,
)
from training.int8_tokens import quantise_per_token

HEADS, HEAD_DIM = 2, 16
D = HEADS * HEAD_DIM
ROWS, COLUMNS = 3, 5


def _attention_graph(rng, biases=(True, True, True)):
    """One decoder layer's self-attention as the in-place recipe leaves it: query, key and
    value projections (each with its bias `Add`, or without), the query scaled by
    head_dim ** -0.5, a `GroupQueryAttention` over the cache."""
    node = helper.make_node
    nodes, weights = [], []
    for name, biased in zip("qkv", biases, strict=True):
        weights.append(numpy_helper.from_array(rng.standard_normal((D, D)).astype("f"), f"W{name}"))
        nodes.append(node("MatMul", ["x", f"W{name}"], [f"{name}_mm"], name=f"{name}_proj"))
        if biased:
            bias = rng.standard_normal(D).astype("f")
            weights.append(numpy_helper.from_array(bias, f"b{name}"))
            nodes.append(node("Add", [f"b{name}", f"{name}_mm"], [f"{name}_out"]))
        else:
            nodes.append(node("Identity", [f"{name}_mm"], [f"{name}_out"]))
    weights.append(numpy_helper.from_array(np.array(HEAD_DIM**-0.5, dtype="f"), "factor"))
    weights.append(numpy_helper.from_array(np.array(COLUMNS, dtype=np.int32), "total"))
    nodes += [
        node("Mul", ["q_out", "factor"], ["q_scaled"]),
        node(
            "GroupQueryAttention",
            ["q_scaled", "k_out", "v_out", "past_key", "past_value", "seqlens", "total"],
            ["attended", "present_key", "present_value"],
            domain="com.microsoft",
            num_heads=HEADS,
            kv_num_heads=HEADS,
            scale=1.0,
        ),
    ]
    cache = [ROWS, HEADS, COLUMNS, HEAD_DIM]
    graph = helper.make_graph(
        nodes,
        "attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, 1, D]),
            helper.make_tensor_value_info("past_key", TensorProto.FLOAT, cache),
            helper.make_tensor_value_info("past_value", TensorProto.FLOAT, cache),
            helper.make_tensor_value_info("seqlens", TensorProto.INT32, [ROWS]),
        ],
        [
            helper.make_tensor_value_info("attended", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("present_key", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("present_value", TensorProto.FLOAT, None),
        ],
        weights,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    assert quantise_per_token(model) == 3
    return model


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _attention_feeds(rng):
    cache = (ROWS, HEADS, COLUMNS, HEAD_DIM)
    return {
        "x": rng.standard_normal((ROWS, 1, D)).astype("f"),
        "past_key": rng.standard_normal(cache).astype("f"),
        "past_value": rng.standard_normal(cache).astype("f"),
        "seqlens": np.array([0, 2, 4], dtype=np.int32),
    }


def test_query_key_and_value_become_one_product_fed_whole_to_the_attention():
    rng = np.random.default_rng(0)
    model = _attention_graph(rng)
    feeds = _attention_feeds(rng)
    expected = _run(model, feeds)
    assert pack_products(model) == 1
    assert pack_self_attention(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 1
    assert "Split" not in ops and "Mul" not in ops
    [attention] = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    assert list(attention.input[1:3]) == ["", ""]
    scale = [helper.get_attribute_value(a) for a in attention.attribute if a.name == "scale"]
    assert scale == [pytest.approx(HEAD_DIM**-0.5)]
    for got, want in zip(_run(model, feeds), expected, strict=True):
        np.testing.assert_array_equal(got, want)  # the same bits: 0.125 is a power of two


def test_products_are_packed_only_when_all_or_none_have_a_bias():
    rng = np.random.default_rng(1)
    mixed = _attention_graph(rng, biases=(True, False, True))
    assert pack_products(mixed) == 0
    plain = _attention_graph(rng, biases=(False, False, False))
    feeds = _attention_feeds(rng)
    expected = _run(plain, feeds)
    assert pack_products(plain) == 1
    # the parts go to the Identity nodes that read them; the attention keeps its three inputs
    assert pack_self_attention(plain) == 0
    for got, want in zip(_run(plain, feeds), expected, strict=True):
        np.testing.assert_array_equal(got, want)


VOCAB, TOP = 12, 3


def _head_graph(bias):
    """A head's preview plus bias, its best candidates, and the logits with the candidates'
    exact scores written over the preview (as `training.int8_tokens.rescore_head` does)."""
    node = helper.make_node
    nodes = [
        node("Add", ["preview", "final_logits_bias"], ["approx"]),
        node("TopK", ["approx", "k"], ["top_scores", "top_ids"], axis=-1),
        node("Mul", ["top_scores", "two"], ["exact"]),
        node("ScatterElements", ["approx", "top_ids", "exact"], [artifacts.LOGITS], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("preview", TensorProto.FLOAT, [ROWS, VOCAB])],
        [
            helper.make_tensor_value_info(artifacts.LOGITS, TensorProto.FLOAT, [ROWS, VOCAB]),
            helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, [ROWS, TOP]),
            helper.make_tensor_value_info("top_ids", TensorProto.INT64, [ROWS, TOP]),
        ],
        [
            numpy_helper.from_array(bias.astype("f").reshape(1, VOCAB), "final_logits_bias"),
            numpy_helper.from_array(np.array([TOP], dtype=np.int64), "k"),
            numpy_helper.from_array(np.array(2.0, dtype="f"), "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("zero", [True, False])
def test_the_logits_are_written_only_when_a_run_fetches_them(tmp_path, zero):
    rng = np.random.default_rng(2)
    bias = np.zeros(VOCAB) if zero else rng.standard_normal(VOCAB)
    model = _head_graph(bias)
    feeds = {"preview": rng.standard_normal((ROWS, VOCAB)).astype("f")}
    expected = dict(zip([o.name for o in model.graph.output], _run(model, feeds), strict=True))
    assert drop_zero_bias(model) == int(zero)  # only an all-zero bias goes
    assert logits_on_request(model)
    assert [n.op_type for n in model.graph.node].count("ScatterElements") == 0
    path = tmp_path / "head.onnx"
    onnx.save(model, str(path))
    session = OnnxSession(path, provider="cpu")
    # the session sets `want_logits` from what a call fetches; callers never feed it
    top = session.run(feeds, outputs=[artifacts.TOP_IDS, artifacts.TOP_SCORES])
    np.testing.assert_array_equal(top["top_ids"], expected["top_ids"])
    np.testing.assert_array_equal(top["top_scores"], expected["top_scores"])
    everything = session.run(feeds)
    np.testing.assert_array_equal(everything[artifacts.LOGITS], expected[artifacts.LOGITS])
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    skipped = raw.run([artifacts.LOGITS], {**feeds, artifacts.WANT_LOGITS: np.array(False)})
    assert skipped[0].shape == (0, 0)


def test_a_graph_whose_logits_are_not_scattered_is_left_alone():
    model = _head_graph(np.zeros(VOCAB))
    model.graph.node[-1].op_type = "Add"  # logits = approx + exact: no rescored scatter
    model.graph.node[-1].ClearField("attribute")
    assert not logits_on_request(model)
    assert artifacts.WANT_LOGITS not in {i.name for i in model.graph.input}
