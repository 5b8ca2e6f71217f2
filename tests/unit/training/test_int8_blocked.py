"""Blocked per-token quantisers: the same bits as the Div + QuantizeLinear chains, fewer nodes."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.int8_blocked import (
    ANY_WIDTH,
    OPSET,
    ZERO_POINTS,
    activation_shapes,
    block_token_quantisers,
)
from training.int8_tokens import quantise_per_token

K, N = 64, 48


def _graph(rng):
    """Token rows [batch, tokens, K] through two products, and one row per batch ([batch, K],
    the first token) through a third: two groups of activations with different leading
    dimensions, as in the decoder (its layers and its LM head)."""
    weights = {
        "A": rng.standard_normal((K, K)),
        "B": rng.standard_normal((K, N)),
        "C": rng.standard_normal((K, N)),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["a"], name="mm_a"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "B"], ["b"], name="mm_b"),
        helper.make_node("Gather", ["x", "first"], ["row"], axis=1, name="first_token"),
        helper.make_node("MatMul", ["row", "C"], ["c"], name="mm_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", K])],
        [
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", "tokens", N]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", N]),
        ],
        [numpy_helper.from_array(w.astype(np.float32) * 0.1, k) for k, w in weights.items()]
        + [numpy_helper.from_array(np.array(0, dtype=np.int64), "first")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["b", "c"], {"x": x})


def _quantised(rng):
    model = _graph(rng)
    shapes = activation_shapes(model)
    assert quantise_per_token(model) == 3
    return model, shapes


def _inputs(rng):
    x = rng.standard_normal((3, 5, K)).astype(np.float32) * rng.uniform(0.01, 20, (3, 5, 1))
    x[0, 0, :4] = [0.5, -0.5, 1.5, 2.5]  # ties, which both forms round to even
    x[1, 2] = 0.0  # a silent token: its scale is the floor, its tokens zero
    return x.astype(np.float32)


def test_blocked_quantisers_give_the_same_bits_with_a_pass_fewer():
    rng = np.random.default_rng(0)
    chained, shapes = _quantised(rng)
    blocked = block_token_quantisers(
        onnx.ModelProto.FromString(chained.SerializeToString()), shapes
    )
    assert {o.version for o in blocked.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}
    quantisers = [n for n in blocked.graph.node if n.op_type == "QuantizeLinear"]
    producers = {out: n.op_type for n in blocked.graph.node for out in n.output}
    assert len(quantisers) == 3  # x, r and row
    assert all(producers.get(q.input[0]) != "Div" for q in quantisers)
    assert "Div" not in [n.op_type for n in blocked.graph.node if n.output[0].endswith(".units")]
    widths = {next(a.i for a in q.attribute if a.name == "block_size") for q in quantisers}
    assert widths == {K}
    # one zero point per leading shape: [batch, tokens] and [batch]
    expands = [n for n in blocked.graph.node if n.op_type == "Expand"]
    assert sorted(e.output[0] for e in expands) == [f"{ZERO_POINTS}.0", f"{ZERO_POINTS}.1"]
    x = _inputs(rng)
    for want, got in zip(_run(chained, x), _run(blocked, x), strict=True):
        assert np.array_equal(want, got)


def test_activations_of_unknown_shape_get_their_own_zero_point():
    rng = np.random.default_rng(1)
    chained, _ = _quantised(rng)
    blocked = block_token_quantisers(onnx.ModelProto.FromString(chained.SerializeToString()), {})
    quantisers = [n for n in blocked.graph.node if n.op_type == "QuantizeLinear"]
    assert {next(a.i for a in q.attribute if a.name == "block_size") for q in quantisers} == {
        ANY_WIDTH
    }
    assert len({q.input[2] for q in quantisers}) == len(quantisers) == 3
    x = _inputs(rng)
    for want, got in zip(_run(chained, x), _run(blocked, x), strict=True):
        assert np.array_equal(want, got)


def test_shapes_are_none_known_where_inference_fails(monkeypatch):
    def too_big(model):
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", too_big)
    assert activation_shapes(_graph(np.random.default_rng(2))) == {}
