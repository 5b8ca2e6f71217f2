"""The LM head's low-rank preview (`svd-head`): the rank rule, the factors, what it refuses."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.int8_head import factor_head, leading_subspace, preview_rank

WIDTH, VOCAB = 64, 400


def _head(weight: np.ndarray, extra_reader: bool = False) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["h", "w"], ["logits"], name="lm_head")]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", VOCAB])]
    if extra_reader:
        nodes.append(helper.make_node("Identity", ["w"], ["w_copy"], name="reader"))
        outputs.append(helper.make_tensor_value_info("w_copy", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["rows", WIDTH])],
        outputs,
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, h: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"h": h})[0]


def test_the_rank_is_a_quarter_of_the_width_in_steps_of_16():
    assert preview_rank(768) == 192
    assert preview_rank(128) == 32
    assert preview_rank(64) == 16
    assert preview_rank(100) == 32  # 25 rounded up
    assert preview_rank(8) == 8  # never above the width


def test_the_leading_subspace_is_orthonormal_and_keeps_the_largest_directions():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((WIDTH, VOCAB))
    basis = leading_subspace(weight, 16)
    assert basis.shape == (WIDTH, 16)
    np.testing.assert_allclose(basis.T @ basis, np.eye(16), atol=1e-10)
    singular = np.linalg.svd(weight, compute_uv=False)
    kept = np.linalg.norm(basis.T @ weight, axis=None) ** 2
    np.testing.assert_allclose(kept, (singular[:16] ** 2).sum(), rtol=1e-9)


def test_the_factored_head_is_the_weight_projected_on_its_leading_directions():
    rng = np.random.default_rng(1)
    # A head of rank 12 plus a little noise: rank 16 keeps almost all of it.
    weight = (rng.standard_normal((WIDTH, 12)) @ rng.standard_normal((12, VOCAB))).astype(
        np.float32
    ) + 0.01 * rng.standard_normal((WIDTH, VOCAB)).astype(np.float32)
    h = rng.standard_normal((5, WIDTH)).astype(np.float32)
    model = _head(weight)
    assert factor_head(model, "lm_head") == 16
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    assert "w" not in {t.name for t in model.graph.initializer}  # the full weight is gone
    sizes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert sorted(sizes.values()) == [(16, VOCAB), (WIDTH, 16)]
    approx = _run(model, h)
    exact = h @ weight
    basis = leading_subspace(weight, 16)
    np.testing.assert_allclose(approx, h @ basis @ basis.T @ weight, rtol=1e-4, atol=1e-3)
    # the preview ranks as the full head does: each row's best is among the preview's 4 best
    top = np.argsort(-approx, axis=1)[:, :4]
    assert all(exact[r].argmax() in top[r] for r in range(len(h)))


def test_a_head_it_cannot_factor_is_left_alone():
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((WIDTH, VOCAB)).astype(np.float32)
    shared = _head(weight, extra_reader=True)
    before = shared.SerializeToString()
    assert factor_head(shared, "lm_head") is None  # its weight has another reader
    assert shared.SerializeToString() == before
    assert factor_head(_head(weight), "no_such_node") is None
    # a vocabulary so small that the factors would hold more than the weight
    narrow = np.ascontiguousarray(weight[:, :16])
    small = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["h", "w"], ["logits"], name="lm_head")],
            "g",
            [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["rows", WIDTH])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", 16])],
            [numpy_helper.from_array(narrow, "w")],
        )
    )
    assert factor_head(small, "lm_head") is None
