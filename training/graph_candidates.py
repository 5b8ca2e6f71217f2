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
scores can be finer than the logits; `explain.onnx_backend.candidates_of` rounds them to the
logits' type, which keeps the pick exact (rounding never reorders two scores).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain.artifacts import LOGITS, TOP_IDS, TOP_SCORES

PREFIX = "prism.candidates"
_K = f"{PREFIX}.k"


def remove_candidates(model: onnx.ModelProto) -> int | None:
    """Take the candidates' nodes, constant and outputs out of `model`, in place. Returns
    how many candidates it had per row, None if it had none."""
    graph = model.graph
    nodes = [n for n in graph.node if not n.name.startswith(PREFIX)]
    if len(nodes) == len(graph.node):
        return None
    k = next(int(numpy_helper.to_array(t)[0]) for t in graph.initializer if t.name == _K)
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
    initializers = [t for t in graph.initializer if t.name != _K]
    if len(initializers) != len(graph.initializer):
        kept = [onnx.TensorProto() for _ in initializers]
        for tensor, source in zip(kept, initializers, strict=True):
            tensor.CopyFrom(source)
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return k


def add_candidates(model: onnx.ModelProto, k: int) -> None:
    """Append, in place, the `TopK` over `logits` that writes its `k` best as `top_scores`
    and `top_ids` (taking off any earlier one first); `k` at most the vocabulary's size."""
    remove_candidates(model)
    graph = model.graph
    logits = next((o for o in graph.output if o.name == LOGITS), None)
    if logits is None:
        raise ValueError("the graph has no logits output to pick candidates from")
    scores = LOGITS
    nodes = []
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
            name=f"{PREFIX}.TopK",
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
