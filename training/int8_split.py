"""The second feed-forward layers split along their reduction axis, for the `per-token-split`
int8 recipe (`training.variants`).

A second feed-forward layer reads the GELU output: `ffn_dim` (3,072 at bart-base) features
per token, a few of them outliers. With one int8 scale per token (`training.int8_tokens`) an
outlier coarsens the grid of all the others. `split_reduction` rewrites such a MatMul

    y = x @ W                     x [..., K], W [K, N], K > N

into `groups` products over consecutive slices of the reduction axis, summed:

    x_0, ..., x_{g-1} = Split(x, axis=-1)        K / g features each
    y = Sum(x_i @ W[i*K/g:(i+1)*K/g])

which is the same product in fp32 (up to the order of the additions), but once the per-token
rewrite has run each slice has its own scale per token: an outlier coarsens only its slice.
Measured on the embedded default model (2026-12-03 build, 1,960 gate requests): the plain
`per-token` recipe kept 97.91 % of answers identical to fp32; these layers in 4 groups 98.21 %,
in 8 groups 98.32 %, in 16 groups 98.47 %, in fp32 98.52 %, in `MatMulNBits` blocks 98.52 %.
At the bart-base shape (AVX2, 2 threads) 8 groups ran a static batch of 32 within the noise
of the plain recipe, 16 groups visibly slower, the fp32 layers about 0.8x and the blocks
about 0.65x its throughput.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.int8_tokens import PREFIX, constant_weight_matmuls

GROUPS = 8


def second_feed_forward(model: onnx.ModelProto, groups: int = GROUPS) -> list[str]:
    """The named constant-weight MatMuls that narrow their input (weight [K, N] with K > N and
    K a multiple of `groups`): in BART, every layer's second feed-forward layer."""
    weights = {t.name: t for t in model.graph.initializer}
    names = []
    for index in constant_weight_matmuls(model):
        node = model.graph.node[index]
        rows, columns = weights[node.input[1]].dims
        if node.name and rows > columns and rows % groups == 0:
            names.append(node.name)
    return names


def split_reduction(model: onnx.ModelProto, names: list[str], groups: int = GROUPS) -> int:
    """Rewrite the MatMuls named in `names` in place as `groups` products over slices of the
    reduction axis and their `Sum` (see the module docstring). Their float weights are
    replaced by the slices. Returns how many were rewritten."""
    if groups < 2:
        return 0
    weights = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    wanted = set(names)
    rewritten: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.name not in wanted:
            rewritten.append(node)
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        width = weight.shape[0] // groups
        p = f"{PREFIX}.split.{count}"
        sizes = np.full(groups, width, dtype=np.int64)
        model.graph.initializer.append(numpy_helper.from_array(sizes, f"{p}.sizes"))
        slices = [f"{p}.x{i}" for i in range(groups)]
        products = [f"{p}.y{i}" for i in range(groups)]
        rewritten.append(
            helper.make_node(
                "Split", [node.input[0], f"{p}.sizes"], slices, axis=-1, name=f"{p}.Split"
            )
        )
        for i in range(groups):
            part = np.ascontiguousarray(weight[i * width : (i + 1) * width])
            model.graph.initializer.append(numpy_helper.from_array(part, f"{p}.w{i}"))
            rewritten.append(
                helper.make_node(
                    "MatMul", [slices[i], f"{p}.w{i}"], [products[i]], name=f"{p}.MatMul{i}"
                )
            )
        rewritten.append(helper.make_node("Sum", products, [node.output[0]], name=f"{p}.Sum"))
        uses[node.input[1]] -= 1
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    unused = {name for name, n in uses.items() if n == 0 and name in weights}
    kept = [t for t in model.graph.initializer if t.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return count
