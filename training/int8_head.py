"""The LM head's preview in low rank: the `svd-head` int8 recipe (SVD-softmax).

A greedy decode step wants the argmax of the logits. The `per-token` recipes already split
the tied LM head in two (`training.int8_tokens.rescore_head`): an approximate pass over the
whole vocabulary picks each row's best candidates, and only those are rescored against the
int8 token table. At bart-base the approximate pass is the step's largest product (768 x
50,330 int8 weights, 38.6 MB, 44 % of a decode step's weight bytes), and at one row a
decode step is bound by reading weights (on the Intel AVX-512 host, 2026-12-05: the int8
head alone took 0.85 ms with its weights in cache and 1.52-1.58 ms once the working set
outgrew it).

`factor_head` makes that pass low-rank, as Shim et al.'s SVD-softmax (NIPS 2017) previews
the softmax: with Q the `rank` leading left singular vectors of the head's weight W
([width, vocab]),

    approx = (h @ Q) @ (Q^T W)        [rows, rank] then [rows, vocab]

two products that `quantise_per_token` then puts on the integer GEMM like any other. At
rank = width / 4 the pass reads a quarter of the bytes. The recipe rescores more candidates
(`SVD_RESCORED`, against the same int8 table) since the preview ranks them more coarsely; the
argmax is unchanged whenever it lies among them, and the gate
(`training.variants`) measures how often the answers stay fp32's on the model's own
held-out requests. Every row goes through the same graph, so a row's tokens still do not
depend on who shares its batch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.int8_tokens import HEAD

RANK_SHARE = 4  # the preview's rank is the head's width divided by this
RANK_STEP = 16  # ... rounded up to a multiple of this
SVD_RESCORED = 32  # candidates per row rescored after the low-rank preview


def preview_rank(width: int) -> int:
    """The preview's rank for a head of `width` inputs (bart-base 768 -> 192)."""
    rank = -(-width // RANK_SHARE)
    return min(width, -(-rank // RANK_STEP) * RANK_STEP)


def leading_subspace(weight: np.ndarray, rank: int) -> np.ndarray:
    """[width, rank]: the `rank` leading left singular vectors of `weight` ([width, vocab]),
    from the eigenvectors of W W^T in float64 (a width x width problem, not width x vocab)."""
    w = weight.astype(np.float64)
    values, vectors = np.linalg.eigh(w @ w.T)
    order = np.argsort(values)[::-1][:rank]
    return vectors[:, order]


def factor_head(model: onnx.ModelProto, head: str) -> int | None:
    """Replace the MatMul `head` (a constant weight [width, vocab]) by its rank-`preview_rank`
    factors, in place. Returns the rank, or None, touching nothing, when `head` is not such
    a MatMul, its weight is shared with another node, or the rank would save nothing."""
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = list(model.graph.node)
    at = next((i for i, n in enumerate(nodes) if n.name == head and n.op_type == "MatMul"), None)
    if at is None or nodes[at].input[1] not in initializers:
        return None
    matmul = nodes[at]
    weight_name = matmul.input[1]
    if sum(name == weight_name for n in nodes for name in n.input) != 1:
        return None
    weight = numpy_helper.to_array(initializers[weight_name])
    if weight.ndim != 2:
        return None
    width, vocab = weight.shape
    rank = preview_rank(width)
    if rank * (width + vocab) >= width * vocab:
        return None
    basis = leading_subspace(weight, rank)
    down = basis.astype(np.float32)
    up = (basis.T @ weight.astype(np.float64)).astype(np.float32)
    p = f"{HEAD}.preview"
    factors = [
        helper.make_node("MatMul", [matmul.input[0], f"{p}.down"], [f"{p}.h"], name=f"{p}.Down"),
        helper.make_node("MatMul", [f"{p}.h", f"{p}.up"], list(matmul.output), name=f"{p}.Up"),
    ]
    del model.graph.node[at]
    for offset, node in enumerate(factors):
        model.graph.node.insert(at + offset, node)
    model.graph.initializer.remove(initializers[weight_name])
    model.graph.initializer.extend(
        [numpy_helper.from_array(down, f"{p}.down"), numpy_helper.from_array(up, f"{p}.up")]
    )
    return rank
