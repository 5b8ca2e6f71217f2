"""The `per-token-split` rewrite: a narrowing MatMul as per-token integer products over slices
of its reduction axis, the same bits as splitting it in fp32 and quantising each slice on its
own, and finer than one scale per token when one feature is an outlier."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.int8_split import quantise_split, second_feed_forward
from training.int8_tokens import quantise_per_token

D, FFN = 32, 128


def _ffn(rng, outlier: float = 1.0):
    """x [.., D] -> MatMul(up) -> Relu -> h [.., FFN] -> MatMul(down) -> y [.., D]; feature 7
    scaled by `outlier` (a GELU output has a few features far larger than the rest)."""
    up = (rng.standard_normal((D, FFN)) * 0.1).astype(np.float32)
    up[:, 7] *= outlier
    down = (rng.standard_normal((FFN, D)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "up"], ["pre"], name="fc1"),
            helper.make_node("Relu", ["pre"], ["h"], name="act"),
            helper.make_node("MatMul", ["h", "down"], ["y"], name="fc2"),
        ],
        "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", D])],
        [numpy_helper.from_array(up, "up"), numpy_helper.from_array(down, "down")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _split_in_fp32(model, name: str, groups: int):
    """The slice-by-slice form: `name` as a float `Split`, `groups` MatMuls and their `Sum`,
    which `quantise_per_token` then quantises slice by slice, a chain per slice."""
    weights = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.name != name:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        width = weight.shape[0] // groups
        model.graph.initializer.append(
            numpy_helper.from_array(np.full(groups, width, dtype=np.int64), "sizes")
        )
        parts = [f"part{i}" for i in range(groups)]
        nodes.append(helper.make_node("Split", [node.input[0], "sizes"], parts, axis=-1))
        for i in range(groups):
            model.graph.initializer.append(
                numpy_helper.from_array(weight[i * width : (i + 1) * width].copy(), f"down{i}")
            )
            nodes.append(
                helper.make_node("MatMul", [parts[i], f"down{i}"], [f"y{i}"], name=f"{name}.{i}")
            )
        nodes.append(helper.make_node("Sum", [f"y{i}" for i in range(groups)], [node.output[0]]))
        model.graph.initializer.remove(weights[node.input[1]])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def _copy(model):
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def test_only_the_narrowing_product_is_split_into_integer_products():
    model = _ffn(np.random.default_rng(0))
    assert second_feed_forward(model, 4) == ["fc2"]
    assert second_feed_forward(model, 3) == []  # 128 rows do not split in 3
    assert quantise_split(model, ["fc2"], 4) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops[:2] == ["MatMul", "Relu"] and ops.count("MatMul") == 1  # fc1 is left as it was
    assert ops.count("MatMulIntegerToFloat") == 4 and ops[-1] == "Sum"
    # one quantising pass over the whole activation, then its slices and their scales
    assert ops.count("QuantizeLinear") == ops.count("ReduceMax") == 1
    assert ops.count("Split") == 2
    names = {t.name for t in model.graph.initializer}
    assert "down" not in names and "up" in names  # the float weight is gone
    slices = [t for t in model.graph.initializer if t.data_type == TensorProto.INT8]
    assert [tuple(t.dims) for t in slices] == [(FFN // 4, D)] * 4
    onnx.checker.check_model(model)


def test_nothing_is_split_into_one_group_or_into_uneven_slices():
    model = _ffn(np.random.default_rng(1))
    assert quantise_split(model, ["fc2"], 1) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Relu", "MatMul"]
    with pytest.raises(ValueError, match="128 rows do not split into 3"):
        quantise_split(model, ["fc2"], 3)


def test_the_same_bits_as_quantising_each_slice_on_its_own():
    rng = np.random.default_rng(3)
    model = _ffn(rng, outlier=40.0)
    x = (rng.standard_normal((3, 11, D)) * 2).astype(np.float32)
    x[1, 4] = 0.0  # an all-zero token: every slice at the scale floor
    grouped, sliced = _copy(model), _split_in_fp32(_copy(model), "fc2", 8)
    quantise_split(grouped, ["fc2"], 8)
    quantise_per_token(grouped, exclude={"fc1"})
    quantise_per_token(sliced, exclude={"fc1"})
    sliced_ops = [n.op_type for n in sliced.graph.node]
    assert sliced_ops.count("QuantizeLinear") == 8  # the reference quantises slice by slice
    np.testing.assert_array_equal(_run(grouped, x), _run(sliced, x))
    assert len(grouped.graph.node) < len(sliced.graph.node)


def test_slices_keep_an_outlier_from_coarsening_the_other_features():
    rng = np.random.default_rng(2)
    model = _ffn(rng, outlier=60.0)
    x = rng.standard_normal((4, 16, D)).astype(np.float32)
    expected = _run(model, x)
    plain, split = _copy(model), _copy(model)
    quantise_per_token(plain, exclude={"fc1"})
    quantise_split(split, ["fc2"], 8)
    plain_error = np.abs(_run(plain, x) - expected).mean()
    split_error = np.abs(_run(split, x) - expected).mean()
    assert split_error < 0.6 * plain_error  # 0.51 here; 1.0 without the slices
