"""The second feed-forward layers in slices of their reduction axis, for the `per-token-split`
int8 recipe (`training.variants`).

A second feed-forward layer reads the GELU output: `ffn_dim` (3,072 at bart-base) features
per token, a few of them outliers. With one int8 scale per token (`training.int8_tokens`) an
outlier coarsens the grid of all the others. `quantise_split` rewrites such a MatMul

    y = x @ W                     x [..., K], W [K, N], K > N

into `groups` integer products over consecutive slices of the reduction axis, summed:

    y = Sum(MatMulIntegerToFloat(q_i, W8_i, s_i, w_scale_i, 128))

where slice i of every token (`K / groups` features) has its own scale `s_i` (its peak over
127) and `W8_i` is `W`'s rows of that slice in 7-bit int8 with their own per-channel scales:
an outlier coarsens only its slice. The slices are quantised together, over `x` seen as
[tokens x groups, K / groups] rows (one `Abs`, `ReduceMax`, `Div` and `QuantizeLinear`), then
split: 14 nodes per layer instead of a `Split` of the float activation and a quantising chain
per slice (at 8 slices 49 nodes, 89 with the chain this replaced), with the same bits (the
tests compare the two).
Measured on the embedded default model (2026-12-03 build, 1,960 gate requests): the plain
`per-token` recipe kept 97.91 % of answers identical to fp32; these layers in 4 groups 98.21 %,
in 8 groups 98.32 %, in 16 groups 98.47 %, in fp32 98.52 %, in `MatMulNBits` blocks 98.52 %.
At the bart-base shape (AVX2, 2 threads) 8 groups quantised slice by slice ran a static batch
of 32 within the noise of the plain recipe, 16 groups visibly slower, the fp32 layers about
0.8x and the blocks about 0.65x its throughput.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.int8_tokens import (
    MS_DOMAIN,
    PREFIX,
    add_token_constants,
    constant_weight_matmuls,
    quantise_tokens,
    quantise_weight,
)

GROUPS = 8
SPLIT = f"{PREFIX}.split"  # names of what `quantise_split` adds


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


def quantise_split(model: onnx.ModelProto, names: list[str], groups: int = GROUPS) -> int:
    """Rewrite the MatMuls named in `names` in place as `groups` per-token integer products
    over slices of the reduction axis and their `Sum` (see the module docstring). Their float
    weights are removed. Returns how many were rewritten."""
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
        if node.op_type != "MatMul" or node.name not in wanted or node.input[1] not in weights:
            rewritten.append(node)
            continue
        weight_dims = weights[node.input[1]].dims
        if weight_dims[0] % groups:
            raise ValueError(f"{node.name}: {weight_dims[0]} rows do not split into {groups}")
        if count == 0:
            add_token_constants(model)
            model.graph.initializer.extend(_shared_constants())
        weight = numpy_helper.to_array(weights[node.input[1]])
        width = weight.shape[0] // groups
        p = f"{SPLIT}.{count}"
        model.graph.initializer.extend(_layer_constants(p, width, groups))
        rewritten += _quantise_slices(node.input[0], p, groups)
        products = [f"{p}.y{i}" for i in range(groups)]
        for i in range(groups):
            w8, w_scale = quantise_weight(weight[i * width : (i + 1) * width])
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(w8, f"{p}.w{i}"),
                    numpy_helper.from_array(w_scale, f"{p}.ws{i}"),
                ]
            )
            rewritten.append(
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [f"{p}.u8_{i}", f"{p}.w{i}", f"{p}.s{i}", f"{p}.ws{i}", f"{PREFIX}.zp"],
                    [products[i]],
                    name=f"{p}.MM{i}",
                    domain=MS_DOMAIN,
                )
            )
        rewritten.append(helper.make_node("Sum", products, [node.output[0]], name=f"{p}.Sum"))
        uses[node.input[1]] -= 1
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    if count and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    unused = {name for name, n in uses.items() if n == 0 and name in weights}
    kept = [t for t in model.graph.initializer if t.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return count


def _shared_constants() -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array([0], dtype=np.int64), f"{SPLIT}.first"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{SPLIT}.last"),
    ]


def _layer_constants(p: str, width: int, groups: int) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{p}.rows"),
        numpy_helper.from_array(np.full(groups, width, dtype=np.int64), f"{p}.widths"),
        numpy_helper.from_array(np.ones(groups, dtype=np.int64), f"{p}.ones"),
        numpy_helper.from_array(np.array([groups], dtype=np.int64), f"{p}.groups"),
    ]


def _quantise_slices(x: str, p: str, groups: int) -> list[onnx.NodeProto]:
    """Nodes quantising `x` [..., K] per token and slice: `{p}.u8_i` (uint8 [..., K / groups])
    and `{p}.s{i}` (float [..., 1]) for each slice i, rounded as `training.int8_tokens`
    rounds a whole token (`quantise_tokens`), over `x` seen as [tokens x groups, K / groups]
    rows."""
    node = helper.make_node

    def split(source: str, sizes: str, parts: list[str], what: str) -> onnx.NodeProto:
        return node("Split", [source, sizes], parts, axis=-1, name=f"{p}.Split{what}")

    return [
        node("Reshape", [x, f"{p}.rows"], [f"{p}.t"], name=f"{p}.Slices"),
        *quantise_tokens(f"{p}.t", f"{p}.q"),  # -> {p}.q.u8, {p}.q.scale
        node("Shape", [x], [f"{p}.shape"], name=f"{p}.Shape"),
        node("Reshape", [f"{p}.q.u8", f"{p}.shape"], [f"{p}.u8"], name=f"{p}.Unflatten"),
        split(f"{p}.u8", f"{p}.widths", [f"{p}.u8_{i}" for i in range(groups)], "Tokens"),
        node(
            "Slice",
            [f"{p}.shape", f"{SPLIT}.first", f"{SPLIT}.last"],
            [f"{p}.lead"],
            name=f"{p}.Lead",
        ),
        node("Concat", [f"{p}.lead", f"{p}.groups"], [f"{p}.grid"], axis=0, name=f"{p}.Grid"),
        node("Reshape", [f"{p}.q.scale", f"{p}.grid"], [f"{p}.scale_grid"], name=f"{p}.ScaleGrid"),
        split(f"{p}.scale_grid", f"{p}.ones", [f"{p}.s{i}" for i in range(groups)], "Scales"),
    ]
