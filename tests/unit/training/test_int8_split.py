"""The `per-token-split` rewrite: a narrowing MatMul as products over slices of its reduction
axis, the same in fp32, and finer once quantised per token when one feature is an outlier."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.int8_split import second_feed_forward, split_reduction
from training.int8_tokens import quantise_per_token

D, FFN = 32, 128


def _ffn(rng):
    """x [.., D] -> MatMul(up) -> h [.., FFN] -> MatMul(down) -> y [.., D]."""
    up = (rng.standard_normal((D, FFN)) * 0.1).astype(np.float32)
    down = (rng.standard_normal((FFN, D)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "up"], ["h"], name="fc1"),
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


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def _copy(model):
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def test_only_the_narrowing_product_is_split_and_fp32_is_unchanged():
    rng = np.random.default_rng(0)
    model = _ffn(rng)
    x = rng.standard_normal((2, 5, D)).astype(np.float32)
    expected = _run(model, x)
    assert second_feed_forward(model, 4) == ["fc2"]
    assert second_feed_forward(model, 3) == []  # 128 rows do not split in 3
    assert split_reduction(model, ["fc2"], 4) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MatMul", "Split", "MatMul", "MatMul", "MatMul", "MatMul", "Sum"]
    names = {t.name for t in model.graph.initializer}
    assert "down" not in names and "up" in names  # the whole weight is gone, its slices stay
    slices = [
        t for t in model.graph.initializer if t.name.endswith(tuple(f".w{i}" for i in range(4)))
    ]
    assert [tuple(t.dims) for t in slices] == [(FFN // 4, D)] * 4
    onnx.checker.check_model(model)
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


def test_nothing_is_split_into_one_group():
    model = _ffn(np.random.default_rng(1))
    assert split_reduction(model, ["fc2"], 1) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]


def test_slices_keep_an_outlier_from_coarsening_the_other_features():
    rng = np.random.default_rng(2)
    model = _ffn(rng)
    x = rng.standard_normal((4, 16, D)).astype(np.float32)
    # One hidden feature far larger than the rest, as a GELU output has.
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "up"))
    up = (rng.standard_normal((D, FFN)) * 0.1).astype(np.float32)
    up[:, 7] *= 60.0
    model.graph.initializer.append(numpy_helper.from_array(up, "up"))
    expected = _run(model, x)
    plain, split = _copy(model), _copy(model)
    quantise_per_token(plain, exclude={"fc1"})
    split_reduction(split, ["fc2"], 8)
    quantise_per_token(split, exclude={"fc1"})
    assert [n.op_type for n in split.graph.node].count("MatMulIntegerToFloat") == 8
    plain_error = np.abs(_run(plain, x) - expected).mean()
    split_error = np.abs(_run(split, x) - expected).mean()
    assert split_error < 0.6 * plain_error  # 0.46 here; 1.0 without the slices
