"""Constant reshape targets: the exporter's run-time shape arithmetic replaced by 0 (copy the
input's dimension) and one -1, computing the same tensors with none of the shape nodes."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.graph_shapes import constant_reshapes, drop_dead_nodes

HEADS, HEAD_DIM = 2, 4
WIDTH = HEADS * HEAD_DIM


def _dim(source: str, axis: int, tag: str) -> list:
    """`Unsqueeze(Gather(Shape(source), axis), 0)`, as the TorchScript exporter writes it."""
    return [
        helper.make_node("Shape", [source], [f"{tag}.shape"]),
        helper.make_node(
            "Constant", [], [f"{tag}.i"], value=numpy_helper.from_array(np.array(axis))
        ),
        helper.make_node("Gather", [f"{tag}.shape", f"{tag}.i"], [f"{tag}.d"], axis=0),
        helper.make_node("Unsqueeze", [f"{tag}.d", "axis0"], [tag]),
    ]


def _heads_graph(other_batch: bool = False):
    """x [B, T, WIDTH] -> [B, T, HEADS, HEAD_DIM] -> Transpose -> back to [B, T, WIDTH],
    with the shapes computed at run time, as exported. `other_batch`: the first reshape takes
    its batch from another input (the same size here, but nothing says so)."""
    nodes = _dim("w" if other_batch else "x", 0, "b")
    nodes += _dim("x", 1, "t")
    nodes += _dim("x", 2, "d")
    nodes += [
        helper.make_node("Div", ["d", "heads"], ["dh"]),
        helper.make_node("Concat", ["b", "t", "heads", "dh"], ["split_shape"], axis=0),
        helper.make_node("Reshape", ["x", "split_shape"], ["split"], name="split_heads"),
        helper.make_node("Transpose", ["split"], ["heads_first"], perm=[0, 2, 1, 3]),
        helper.make_node("Relu", ["heads_first"], ["attended"]),
        helper.make_node("Transpose", ["attended"], ["tokens_first"], perm=[0, 2, 1, 3]),
    ]
    nodes += _dim("attended", 0, "b2")
    nodes += _dim("attended", 2, "t2")  # the token axis, before the transpose
    nodes += _dim("attended", 1, "h2")
    nodes += _dim("attended", 3, "e2")
    nodes += [
        helper.make_node("Mul", ["h2", "e2"], ["width"]),
        helper.make_node("Concat", ["b2", "t2", "width"], ["merge_shape"], axis=0),
        helper.make_node("Reshape", ["tokens_first", "merge_shape"], ["y"], name="merge_heads"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", WIDTH])]
    if other_batch:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, ["B", 1]))
    graph = helper.make_graph(
        nodes,
        "heads",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
            numpy_helper.from_array(np.array([HEADS], dtype=np.int64), "heads"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


def _shape_of(model, reshape: str) -> list[int]:
    node = next(n for n in model.graph.node if n.name == reshape)
    init = next(t for t in model.graph.initializer if t.name == node.input[1])
    return numpy_helper.to_array(init).tolist()


def test_exported_reshapes_become_constants_and_compute_the_same():
    model = _heads_graph()
    rng = np.random.default_rng(0)
    feeds = [
        {"x": rng.standard_normal((b, t, WIDTH)).astype(np.float32)}
        for b, t in [(1, 1), (3, 5), (2, 9)]
    ]
    before = [_run(model, f) for f in feeds]
    assert constant_reshapes(model) == 2
    assert _shape_of(model, "split_heads") == [0, 0, HEADS, -1]
    # [B, HEADS, T, HEAD_DIM] transposed back: batch and tokens read through the permutation
    assert _shape_of(model, "merge_heads") == [0, 0, -1]
    ops = {n.op_type for n in model.graph.node}
    assert ops == {"Reshape", "Transpose", "Relu"}  # every shape node is gone
    assert {t.name for t in model.graph.initializer} == {"split_heads.shape", "merge_heads.shape"}
    for f, want in zip(feeds, before, strict=True):
        np.testing.assert_array_equal(_run(model, f), want)


def test_a_dimension_read_from_another_tensor_is_not_assumed_equal():
    model = _heads_graph(other_batch=True)
    assert constant_reshapes(model) == 1  # the merge only: the split's batch is w's
    assert _shape_of(model, "merge_heads") == [0, 0, -1]
    split = next(n for n in model.graph.node if n.name == "split_heads")
    assert split.input[1] == "split_shape"
    feeds = {"x": np.ones((2, 3, WIDTH), np.float32), "w": np.ones((2, 1), np.float32)}
    assert _run(model, feeds).shape == (2, 3, WIDTH)


@pytest.mark.parametrize("constant", [[0], [-1]])
def test_a_target_with_a_literal_zero_or_a_second_unknown_is_left_alone(constant):
    nodes = [
        *_dim("x", 0, "b"),
        helper.make_node("Concat", ["b", "c", "c2"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="r"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
            numpy_helper.from_array(np.array(constant, dtype=np.int64), "c"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "c2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert constant_reshapes(model) == 0
    assert len(model.graph.node) == len(nodes)


def test_reshapes_that_read_zero_literally_are_left_alone():
    model = _heads_graph()
    for node in model.graph.node:
        if node.op_type == "Reshape":
            node.attribute.append(helper.make_attribute("allowzero", 1))
    assert constant_reshapes(model) == 0


def test_dead_nodes_go_and_graph_outputs_stay():
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["unused"]),
            helper.make_node("Neg", ["unused"], ["also_unused"]),
            helper.make_node("Abs", ["x"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), "orphan")],
    )
    model = helper.make_model(graph)
    assert drop_dead_nodes(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Abs"]
    assert not model.graph.initializer
