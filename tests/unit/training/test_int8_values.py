"""Cross-attention values in int8: the encoder's side, the decoder's side, and the two together
against float attention."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from explain.artifacts import cross_value_scale_name
from training.int8_values import quantise_decoder_values, quantise_encoder_values

HEADS, SRC, HEAD_DIM = 2, 7, 8


def _model(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _info(name, shape, kind=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, kind, shape)


def _encoder():
    """h [batch, heads, src, head_dim] -> cross_value_0 (an Identity stands for the projection)."""
    shape = ["batch", HEADS, "src", HEAD_DIM]
    nodes = [helper.make_node("Identity", ["h"], ["cross_value_0"], name="project")]
    return _model(nodes, [_info("h", shape)], [_info("cross_value_0", shape)])


def _decoder():
    """scores [batch, heads, 1, src] -> Softmax -> MatMul(., cross_value_0) -> out."""
    nodes = [
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "cross_value_0"], ["out"], name="attend"),
    ]
    inputs = [
        _info("scores", ["batch", HEADS, 1, "src"]),
        _info("cross_value_0", ["batch", HEADS, "src", HEAD_DIM]),
    ]
    return _model(nodes, inputs, [_info("out", ["batch", HEADS, 1, HEAD_DIM])])


def _session(model):
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_encoder_hands_values_over_in_uint8_with_a_scale_per_token_and_head():
    model = _encoder()
    assert quantise_encoder_values(model) == 1
    out = {o.name: o for o in model.graph.output}
    assert out["cross_value_0"].type.tensor_type.elem_type == TensorProto.UINT8
    scale_shape = [
        d.dim_param or d.dim_value
        for d in out[cross_value_scale_name(0)].type.tensor_type.shape.dim
    ]
    assert scale_shape == ["batch", HEADS, "src", 1]
    h = np.random.default_rng(0).standard_normal((3, HEADS, SRC, HEAD_DIM)).astype(np.float32)
    h[1, 0, 2] = 0.0  # an all-zero token (padding) must not divide by zero
    values, scale = _session(model).run(["cross_value_0", cross_value_scale_name(0)], {"h": h})
    assert values.dtype == np.uint8 and scale.shape == (3, HEADS, SRC, 1)
    restored = (values.astype(np.float32) - 128) * scale
    assert np.all(np.abs(restored - h) <= scale / 2 + 1e-6)  # within half a step
    assert np.abs(values.astype(int) - 128).max() == 127  # each token's peak is on the grid
    assert np.all(values[1, 0, 2] == 128) and np.isfinite(scale).all()


def test_the_decoder_attends_over_int8_values_as_float_attention_does():
    encoder, decoder = _encoder(), _decoder()
    quantise_encoder_values(encoder)
    assert quantise_decoder_values(decoder) == 1
    names = [i.name for i in decoder.graph.input]
    assert names[-1] == cross_value_scale_name(0)
    ops = [n.op_type for n in decoder.graph.node]
    assert "MatMul" not in ops and ops.count("MatMulInteger") == 1
    rng = np.random.default_rng(1)
    h = rng.standard_normal((4, HEADS, SRC, HEAD_DIM)).astype(np.float32)
    scores = (rng.standard_normal((4, HEADS, 1, SRC)) * 3).astype(np.float32)
    values, scale = _session(encoder).run(None, {"h": h})
    got = _session(decoder).run(
        ["out"], {"scores": scores, "cross_value_0": values, cross_value_scale_name(0): scale}
    )[0]
    want = _session(_decoder()).run(["out"], {"scores": scores, "cross_value_0": h})[0]
    assert got.shape == want.shape == (4, HEADS, 1, HEAD_DIM)
    # int8 values (half a step of 1/127 of a token's peak) and uint8 weights (1/255 of a
    # row's peak): a few tenths of a percent of the values' magnitude
    assert np.abs(got - want).max() < 0.02 * np.abs(h).max()
    assert np.abs(got - want).max() > 0  # it is the integer path, not the float one


def test_the_decoder_refuses_values_it_cannot_rewrite():
    decoder = _decoder()
    extra = helper.make_node("Identity", ["cross_value_0"], ["copy"])
    decoder.graph.node.append(extra)
    with pytest.raises(ValueError, match="exactly one MatMul"):
        quantise_decoder_values(decoder)


def test_graphs_without_cross_values_are_left_alone():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_info("x", [2])], [_info("y", [2])])
    before = model.SerializeToString()
    assert quantise_encoder_values(model) == quantise_decoder_values(model) == 0
    assert model.SerializeToString() == before
