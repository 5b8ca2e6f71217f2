"""The decoder graph's best next-token candidates, picked in the graph.

Greedy decoding wants one token per row, the argmax of the logits after the request's bans.
Returning the whole logits row for that costs a copy of [rows, vocab] floats out of ONNX
Runtime at every step (6.4 MB for 32 rows of bart-base's 50k tokens), and another on the
host before the argmax. `add_candidates` appends a `TopK` over the logits: graph outputs
`top_scores` [rows, k] (float32, best first) and `top_ids` [rows, k] (int64). The greedy loop
asks for those alone and picks its token among them (`explain.decoding.choose`); in the
rare step where it cannot be sure the pick is the full argmax's, it asks for the logits.
The logits stay a graph output, for beam search and for that fallback.

The candidates hang off whatever node writes `logits`, so the recipes that rewrite the LM
head (`training.variant_graphs`) take them off first (`remove_candidates`) and add them back
last, after their own nodes; in a half-precision graph the scores are cast to float32
first so every variant returns the same types. On CPU, ONNX Runtime runs half-precision
nodes in float32 and drops the round trip through float16 before the `TopK`, so there the
scores can be finer than the logits; `explain.steps.candidates_of` rounds them to the
logits' type, which keeps the pick exact (rounding never reorders two scores).

Where the LM head is the `per-token` int8 recipe's rescored one (`rescore_head`: a `TopK` of
its best approximate scores, those rescored, written back over the rest), a second `TopK`
over all of `logits` would read the whole vocabulary twice a step. Instead the head's own
`TopK` is widened from its R rescored candidates to R + k, and the k candidates are the best
of its first R (rescored) and the next k (approximate, as `logits` holds them): every token
outside that pool scores no higher than the pool's k-th best, so the candidates keep what
`explain.decoding.choose` relies on (a row whose best beats its lowest candidate has every
token of that score among them). `logits` is unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain.artifacts import LOGITS, TOP_IDS, TOP_SCORES
from training.int8_tokens import (
    HEAD_IDS,
    HEAD_K,
    HEAD_RESCORED,
    HEAD_TOP,
    HEAD_TOPK,
    replace_nodes,
)

PREFIX = "prism.candidates"
_K = f"{PREFIX}.k"
CANDIDATES_TOPK = f"{PREFIX}.TopK"  # over the logits, or over the pool of a rescored head
# The widened head `TopK`'s outputs (rescored head, see the module docstring).
_WIDE_SCORES, _WIDE_IDS = f"{PREFIX}.wide_scores", f"{PREFIX}.wide_ids"


def remove_candidates(model: onnx.ModelProto) -> int | None:
    """Take the candidates' nodes, constant and outputs out of `model`, in place. Returns
    how many candidates it had per row, None if it had none. Refused on a graph whose
    head `TopK` was split in two stages (`training.grouped_topk`, the last step of the int8
    recipes): the candidates are taken off the graphs before that, never after."""
    graph = model.graph
    nodes = [n for n in graph.node if not n.name.startswith(PREFIX)]
    if len(nodes) == len(graph.node):
        return None
    if any(n.name.startswith(f"{HEAD_TOPK}.") for n in nodes):
        raise ValueError("the head's TopK is grouped; take the candidates off before grouping")
    k = next(int(numpy_helper.to_array(t)[0]) for t in graph.initializer if t.name == _K)
    for node in nodes:  # a widened head `TopK` goes back to its own k and outputs
        if node.name == HEAD_TOPK and node.output[0] == _WIDE_SCORES:
            node.output[0], node.output[1] = HEAD_TOP, HEAD_IDS
            own = next(t for t in graph.initializer if t.name == f"{PREFIX}.rescored")
            head_k = next(t for t in graph.initializer if t.name == HEAD_K)
            head_k.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(own), HEAD_K))
    kept_nodes = [onnx.NodeProto() for _ in nodes]
    for target, source in zip(kept_nodes, nodes, strict=True):
        target.CopyFrom(source)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    outputs = [o for o in graph.output if o.name not in (TOP_SCORES, TOP_IDS)]
    kept_outputs = [onnx.ValueInfoProto() for _ in outputs]
    for value, output in zip(kept_outputs, outputs, strict=True):
        value.CopyFrom(output)
    del graph.output[:]
    graph.output.extend(kept_outputs)
    initializers = [t for t in graph.initializer if not t.name.startswith(PREFIX)]
    if len(initializers) != len(graph.initializer):
        kept = [onnx.TensorProto() for _ in initializers]
        for tensor, source in zip(kept, initializers, strict=True):
            tensor.CopyFrom(source)
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return k


def add_candidates(model: onnx.ModelProto, k: int) -> None:
    """Append, in place, the `TopK` over `logits` that writes its `k` best as `top_scores`
    and `top_ids` (taking off any earlier one first); `k` at most the vocabulary's size.
    Over a rescored int8 head, the candidates come from its own widened `TopK` instead (see
    the module docstring)."""
    remove_candidates(model)
    graph = model.graph
    logits = next((o for o in graph.output if o.name == LOGITS), None)
    if logits is None:
        raise ValueError("the graph has no logits output to pick candidates from")
    scores = LOGITS
    nodes = []
    head = _rescored_head(graph, k)
    if head is not None:
        nodes = _pooled_candidates(model, head, k)
    else:
        if logits.type.tensor_type.elem_type != TensorProto.FLOAT:
            scores = f"{PREFIX}.float"
            nodes.append(
                helper.make_node(
                    "Cast", [LOGITS], [scores], to=TensorProto.FLOAT, name=f"{PREFIX}.Cast"
                )
            )
        # Sorted, largest first; ONNX's TopK puts the lower index first among equal scores.
        nodes.append(
            helper.make_node(
                "TopK",
                [scores, _K],
                [TOP_SCORES, TOP_IDS],
                axis=-1,
                largest=1,
                sorted=1,
                name=CANDIDATES_TOPK,
            )
        )
    graph.initializer.append(numpy_helper.from_array(np.array([k], dtype=np.int64), _K))
    graph.node.extend(nodes)
    graph.output.extend(
        [
            helper.make_tensor_value_info(TOP_SCORES, TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info(TOP_IDS, TensorProto.INT64, ["batch", k]),
        ]
    )


def _rescored_head(graph: onnx.GraphProto, k: int) -> tuple[onnx.NodeProto, int, str] | None:
    """The rescored head's `TopK` node, how many it rescores and the rescored scores' name,
    when `logits` (float32) is that head's output and the vocabulary (the logits' last
    dimension) holds its candidates and `k` more; else None."""
    nodes = {n.name: n for n in graph.node}
    top, rescored = nodes.get(HEAD_TOPK), nodes.get(HEAD_RESCORED)
    if top is None or rescored is None or rescored.output[0] != LOGITS:
        return None
    if top.input[1] != HEAD_K or top.output[1] != HEAD_IDS:
        return None
    constant = next((t for t in graph.initializer if t.name == HEAD_K), None)
    logits = next(o for o in graph.output if o.name == LOGITS)
    dims = logits.type.tensor_type.shape.dim
    if logits.type.tensor_type.elem_type != TensorProto.FLOAT:
        return None
    if constant is None or not dims or not dims[-1].HasField("dim_value"):
        return None
    rescored_k = int(numpy_helper.to_array(constant).reshape(-1)[0])
    if rescored_k + k > dims[-1].dim_value:
        return None
    return top, rescored_k, rescored.input[2]


def _pooled_candidates(
    model: onnx.ModelProto, head: tuple[onnx.NodeProto, int, str], k: int
) -> list[onnx.NodeProto]:
    """Widen the head's `TopK` (in place) to its R rescored candidates plus `k`, slicing its
    first R back out right after it, and return the nodes that pick the `k` candidates from
    that pool (the module docstring says why that is exact), to append."""
    top, rescored_k, exact = head
    wide = rescored_k + k
    graph = model.graph
    head_k = next(t for t in graph.initializer if t.name == HEAD_K)  # its only reader is `top`
    head_k.CopyFrom(numpy_helper.from_array(np.array([wide], dtype=np.int64), HEAD_K))
    top.output[0], top.output[1] = _WIDE_SCORES, _WIDE_IDS
    p = PREFIX
    constants = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}.first"),
        numpy_helper.from_array(np.array([rescored_k], dtype=np.int64), f"{p}.rescored"),
        numpy_helper.from_array(np.array([wide], dtype=np.int64), f"{p}.end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}.axis"),
    ]
    node = helper.make_node
    head_part = [f"{p}.first", f"{p}.rescored", f"{p}.axis"]
    rest_part = [f"{p}.rescored", f"{p}.end", f"{p}.axis"]
    # What the head's own TopK wrote before it was widened (its first R, the same order).
    restored = [
        node("Slice", [_WIDE_SCORES, *head_part], [HEAD_TOP], name=f"{p}.HeadTop"),
        node("Slice", [_WIDE_IDS, *head_part], [HEAD_IDS], name=f"{p}.HeadIds"),
    ]
    nodes = list(graph.node)
    at = next(i for i, n in enumerate(nodes) if n.name == top.name)
    replace_nodes(model, nodes, {at: [top, *restored]})
    graph.initializer.extend(constants)
    return [
        node("Slice", [_WIDE_SCORES, *rest_part], [f"{p}.rest_scores"], name=f"{p}.RestTop"),
        node("Slice", [_WIDE_IDS, *rest_part], [f"{p}.rest_ids"], name=f"{p}.RestIds"),
        node("Concat", [exact, f"{p}.rest_scores"], [f"{p}.pool"], axis=1, name=f"{p}.Pool"),
        node("Concat", [HEAD_IDS, f"{p}.rest_ids"], [f"{p}.pool_ids"], axis=1, name=f"{p}.Ids"),
        node(
            "TopK",
            [f"{p}.pool", _K],
            [TOP_SCORES, f"{p}.picked"],
            axis=-1,
            largest=1,
            sorted=1,
            name=CANDIDATES_TOPK,
        ),
        node(
            "GatherElements",
            [f"{p}.pool_ids", f"{p}.picked"],
            [TOP_IDS],
            axis=1,
            name=f"{p}.PickIds",
        ),
    ]
