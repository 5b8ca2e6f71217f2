"""Cross-attention keys in int8: the encoder hands them over in uint8 with their scales, the
decoder scores a query against them on the integer GEMM, close to float attention."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from explain.artifacts import cross_key_scale_name
from tests.unit.training.test_int8_values import HEAD_DIM, HEADS, SRC, _info, _model, _session
from training.int8_keys import quantise_decoder_keys
from training.int8_values import quantise_encoder_keys


def _encoder():
    """h [batch, heads, src, head_dim] -> cross_key_0 (an Identity stands for the projection)."""
    shape = ["batch", HEADS, "src", HEAD_DIM]
    nodes = [helper.make_node("Identity", ["h"], ["cross_key_0"], name="project")]
    return _model(nodes, [_info("h", shape)], [_info("cross_key_0", shape)])


def _decoder(query_perm=(0, 2, 1, 3)):
    """query [batch, 1, heads, head_dim] split into heads, scored against cross_key_0 as BART's
    exported decoder does: MatMul(q, Transpose(keys))."""
    nodes = [
        helper.make_node("Transpose", ["query"], ["q"], perm=list(query_perm), name="split"),
        helper.make_node("Transpose", ["cross_key_0"], ["kT"], perm=[0, 1, 3, 2], name="kT"),
        helper.make_node("MatMul", ["q", "kT"], ["scores"], name="scores"),
    ]
    inputs = [
        _info("query", ["batch", 1, HEADS, HEAD_DIM]),
        _info("cross_key_0", ["batch", HEADS, "src", HEAD_DIM]),
    ]
    return _model(nodes, inputs, [_info("scores", ["batch", HEADS, 1, "src"])])


def test_the_encoder_hands_keys_over_in_uint8_with_a_scale_per_token_and_head():
    model = _encoder()
    assert quantise_encoder_keys(model) == 1
    outputs = {o.name: o for o in model.graph.output}
    assert outputs["cross_key_0"].type.tensor_type.elem_type == TensorProto.UINT8
    h = np.random.default_rng(0).standard_normal((3, HEADS, SRC, HEAD_DIM)).astype(np.float32)
    keys, scale = _session(model).run(["cross_key_0", cross_key_scale_name(0)], {"h": h})
    assert keys.dtype == np.uint8 and scale.shape == (3, HEADS, SRC, 1)
    # symmetric around 128: each token's largest magnitude lands on 1 or 255
    np.testing.assert_allclose((keys.astype(np.float32) - 128) * scale, h, atol=scale.max())
    assert set(np.abs(keys.astype(int) - 128).max(axis=-1).ravel()) == {127}


def test_the_decoder_scores_int8_keys_as_float_attention_does():
    rng = np.random.default_rng(1)
    encoder, decoder = _encoder(), _decoder()
    float_scores = _session(decoder)
    quantise_encoder_keys(encoder)
    assert quantise_decoder_keys(decoder) == 1
    ops = [n.op_type for n in decoder.graph.node]
    assert "MatMul" not in ops and "Transpose" not in ops  # no float product, no key copy
    assert ops.count("MatMulInteger") == 1
    h = rng.standard_normal((3, HEADS, SRC, HEAD_DIM)).astype(np.float32)
    query = rng.standard_normal((3, 1, HEADS, HEAD_DIM)).astype(np.float32)
    keys, scale = _session(encoder).run(["cross_key_0", cross_key_scale_name(0)], {"h": h})
    got = _session(decoder).run(
        ["scores"], {"query": query, "cross_key_0": keys, cross_key_scale_name(0): scale}
    )[0]
    (expected,) = float_scores.run(["scores"], {"query": query, "cross_key_0": h})
    assert got.shape == expected.shape == (3, HEADS, 1, SRC)
    # two 8-bit operands: within about 2 % of each score's scale, the order kept
    spread = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=0.02 * spread)
    assert (got.argmax(axis=-1) == expected.argmax(axis=-1)).mean() >= 0.8


def test_the_decoder_refuses_keys_it_cannot_rewrite():
    # a query whose heads are not split by Transpose(0, 2, 1, 3)
    with pytest.raises(ValueError, match="cross_key_0"):
        quantise_decoder_keys(_decoder(query_perm=(0, 1, 2, 3)))


def test_graphs_without_cross_keys_are_left_alone():
    model = _model([], [_info("x", [1])], [_info("x", [1])])
    assert quantise_decoder_keys(model) == 0
    assert quantise_encoder_keys(model) == 0
