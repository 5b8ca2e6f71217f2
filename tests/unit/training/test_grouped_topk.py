"""The two-stage vocabulary TopK gives exactly what one TopK gives, ties included."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.graph_candidates import remove_candidates
from training.grouped_topk import group_size, group_topk, logits_width
from training.int8_tokens import HEAD_TOPK

ROWS, K = 6, 24


def _graph(width: int, opset: int = 21) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "ids"], axis=-1, name="top")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", width])],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["rows", K]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["rows", K]),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, ["rows", width]),
        ],
        [numpy_helper.from_array(np.array([K], dtype=np.int64), "k")],
    )
    graph.node.append(helper.make_node("Identity", ["x"], ["x_out"], name="keep"))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["values", "ids"], {"x": x})


def _rows(width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, width)).astype(np.float32)
    x[1] = 1.0  # every score equal: the lowest positions win
    x[1, [7, width - 1]] = 5.0
    x[2, 30:100] = 9.0  # a run of equal best scores across group boundaries
    x[3] = np.round(x[3] * 2) / 2  # many ties at every level
    x[4, :] = -np.inf
    x[4, ::97] = 0.0
    x[5, -K:] = 100.0 + np.arange(K)  # the best all in the last groups
    return x


def test_grouped_topk_matches_topk_exactly_ties_included():
    width = 35 * 40
    plain, grouped = _graph(width), _graph(width)
    assert group_topk(grouped, "top", width)
    assert [n.op_type for n in grouped.graph.node].count("TopK") == 3
    assert "ReduceMax" in {n.op_type for n in grouped.graph.node}
    x = _rows(width)
    for want, got in zip(_run(plain, x), _run(grouped, x), strict=True):
        assert np.array_equal(want, got)


def test_group_sizes_divide_the_row_and_leave_more_groups_than_k():
    assert group_size(50_330, 24) == 35  # bart-base's vocabulary
    assert group_size(35 * 40, 24) == 35
    assert group_size(32 * 10, 24) is None  # 10 groups are too few for 24 candidates
    assert group_size(50_333, 24) is None  # prime: no group size divides it


def test_no_rewrite_where_it_cannot_apply():
    for model, width in ((_graph(50_333), 50_333), (_graph(35 * 40, opset=17), 35 * 40)):
        before = model.SerializeToString()
        assert not group_topk(model, "top", width)
        assert model.SerializeToString() == before
    assert not group_topk(_graph(35 * 40), "missing", 35 * 40)
    assert logits_width(_graph(35 * 40), "x_out") == 35 * 40
    assert logits_width(_graph(35 * 40), "ids") is None  # not float scores


def test_candidates_cannot_be_taken_off_a_grouped_head():
    model = _graph(35 * 40)
    model.graph.node[0].name = HEAD_TOPK
    model.graph.node.append(
        helper.make_node("Identity", ["ids"], ["picked"], name="prism.candidates.X")
    )
    assert group_topk(model, HEAD_TOPK, 35 * 40)
    with pytest.raises(ValueError, match="grouped"):
        remove_candidates(model)
