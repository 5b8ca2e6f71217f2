"""A `TopK` over the vocabulary in two stages: the best groups, then the best in them.

ONNX Runtime's CPU `TopK` took 582 us for the 24 best of 16 rows of 50,330 scores (one
thread), about as long as the rest of a decoder step's non-GEMM work in one lane. With the
row seen as groups of G neighbours ([rows, V / G, G], a reshape, no copy):

1. each group's best score (`ReduceMax`), one pass over the row;
2. the k best groups by that score (`TopK` over V / G);
3. those groups in the order of their position (`TopK` of the k group numbers, smallest
   first), their scores gathered ([rows, k x G], `GatherND`);
4. the k best of those (`TopK`), and each one's position in the row computed back from its
   group and its place in the group.

The result is the one `TopK` gives, ties included. A score among the row's k best lies in a
group among the k best: otherwise k groups rank above its group, each holding a score that
ranks above it (a higher best, or an equal one at a lower position, since groups rank by
their best and then by position, as `TopK` ranks scores). And the candidates keep the
row's order (groups by position, then within a group), so `TopK`'s rule for equal scores,
the lower position first, picks the same ones. The same 16 x 50,330 case took 178 us alone;
inside the bart-base int8 decoder (two lanes of 16 rows, ONNX Runtime's profiler,
2026-12-04) the head's `TopK` went from 678 to about 360 us a step (the group maxima 120,
the best groups 108, the final pick 80), and the tokens of 32 rows stayed the same.

Used on the int8 graphs' vocabulary-wide `TopK` (`training.variant_graphs`), where G divides
the vocabulary (no padding copy) and the row has at least k groups; elsewhere the `TopK`
stays as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.int8_tokens import replace_nodes

GROUPS = (32, 35, 30, 40, 28, 36, 25, 45, 48, 24, 50, 20, 56, 16, 64)  # preferred first


def group_size(width: int, k: int) -> int | None:
    """The group size for a row of `width` scores and its `k` best: the first of `GROUPS`
    that divides `width` and leaves more than k groups, or None."""
    return next((g for g in GROUPS if width % g == 0 and width // g > k), None)


def group_topk(model: onnx.ModelProto, name: str, width: int) -> bool:
    """Rewrite the `TopK` node `name` (over the last axis of rows [rows, width], largest
    first, sorted, k a constant) in place into the two-stage form of the module docstring.
    Returns False, touching nothing, when the node is not such a `TopK`, no group size fits
    or the graph's opset is below 18."""
    if not any(o.domain in ("", "ai.onnx") and o.version >= 18 for o in model.opset_import):
        return False  # ReduceMax takes its axes as an input from opset 18 on
    nodes = list(model.graph.node)
    at = next((i for i, n in enumerate(nodes) if n.name == name and n.op_type == "TopK"), None)
    if at is None:
        return False
    top = nodes[at]
    attributes = {a.name: helper.get_attribute_value(a) for a in top.attribute}
    if attributes.get("axis", -1) not in (-1, 1) or attributes.get("largest", 1) != 1:
        return False
    if attributes.get("sorted", 1) != 1:
        return False
    constant = next((t for t in model.graph.initializer if t.name == top.input[1]), None)
    if constant is None:
        return False
    k = int(numpy_helper.to_array(constant).reshape(-1)[0])
    size = group_size(width, k)
    if size is None:
        return False
    scores, (values, indices) = top.input[0], top.output
    p = f"{name}.grouped"
    constants = {
        f"{p}.shape": np.array([0, -1, size], dtype=np.int64),
        f"{p}.flat": np.array([0, -1], dtype=np.int64),
        f"{p}.last": np.array([-1], dtype=np.int64),
        f"{p}.size": np.array(size, dtype=np.int64),
    }
    node = helper.make_node
    new = [
        node("Reshape", [scores, f"{p}.shape"], [f"{p}.groups"], name=f"{p}.Groups"),
        node(
            "ReduceMax", [f"{p}.groups", f"{p}.last"], [f"{p}.best"], keepdims=0, name=f"{p}.Best"
        ),
        node(
            "TopK",
            [f"{p}.best", top.input[1]],
            [f"{p}.top", f"{p}.chosen"],
            axis=-1,
            name=f"{p}.Top",
        ),
        node(
            "TopK",
            [f"{p}.chosen", top.input[1]],
            [f"{p}.in_order", f"{p}.order"],
            axis=-1,
            largest=0,
            name=f"{p}.InOrder",
        ),
        node("Unsqueeze", [f"{p}.in_order", f"{p}.last"], [f"{p}.where"], name=f"{p}.Where"),
        node(
            "GatherND",
            [f"{p}.groups", f"{p}.where"],
            [f"{p}.picked"],
            batch_dims=1,
            name=f"{p}.Picked",
        ),
        node("Reshape", [f"{p}.picked", f"{p}.flat"], [f"{p}.candidates"], name=f"{p}.Candidates"),
        node(
            "TopK",
            [f"{p}.candidates", top.input[1]],
            [values, f"{p}.at"],
            axis=-1,
            name=f"{p}.Final",
        ),
        node("Div", [f"{p}.at", f"{p}.size"], [f"{p}.slot"], name=f"{p}.Slot"),
        node("Mod", [f"{p}.at", f"{p}.size"], [f"{p}.offset"], name=f"{p}.Offset"),
        node(
            "GatherElements",
            [f"{p}.in_order", f"{p}.slot"],
            [f"{p}.group"],
            axis=1,
            name=f"{p}.Group",
        ),
        node("Mul", [f"{p}.group", f"{p}.size"], [f"{p}.start"], name=f"{p}.Start"),
        node("Add", [f"{p}.start", f"{p}.offset"], [indices], name=f"{p}.Index"),
    ]
    model.graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in constants.items())
    replace_nodes(model, nodes, {at: new})
    return True


def logits_width(model: onnx.ModelProto, output: str) -> int | None:
    """The last dimension of graph output `output`, when the graph declares it."""
    value = next((o for o in model.graph.output if o.name == output), None)
    if value is None or value.type.tensor_type.elem_type != TensorProto.FLOAT:
        return None
    dims = value.type.tensor_type.shape.dim
    return dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
