"""Per-token int8 matrix products: the int8 recipe whose activation scales are each token's own.

ONNX Runtime's dynamic quantisation gives an activation tensor one scale per call, so a
row's result depends on whatever else is in the batch, and one outlier token coarsens every
other token's grid. `MatMulNBits` with int8 compute scales per row and block, but on AVX2 its
kernel is barely faster than fp32 once a batch has more than one row (measured on bart-base
shapes, 2 threads: the LM head at 32 rows took 21.7 ms against fp32's 31.5 ms; ORT's integer
GEMM took 12.5 ms).

`quantise_per_token` rewrites every MatMul with a constant 2-D weight into

    s = max(|x|, last axis) / 127            one scale per token (per row of every batch)
    q = uint8(clip(round(x / s) + 128))      symmetric, zero point 128 (`QuantizeLinear`)
    y = MatMulIntegerToFloat(q, W8, s, w_scale, 128)   (ONNX Runtime's contrib op:
                                                          float(q - 128) @ W8 * s * w_scale)

with `W8` the weight in int8, one scale per output channel, 7 bits (|w| <= 63): on AVX2
without VNNI the u8 x s8 kernel adds pairs of products in 16 bits, which full-range weights
can saturate; with 7 bits the int32 sums are exact on every x86 kernel, so a token's result
is the same whatever CPU runs it and whoever shares its batch. The op is written out
rather than left to ONNX Runtime's `MatMulInteger -> Cast -> Mul` fusion: that fusion also
folds a following bias `Add` into the op, and ONNX Runtime 1.32 computes a fused bias wrong
when the activation scale is per token (about 60 % error on a 128 x 128 test matrix; 84.03 %
of the default model's gate answers identical to fp32 instead of 97.96 %); written out, the
bias stays its own `Add`. Tokens sharing an input (query, key and value read one LayerNorm
output) are quantised once.

`quantise_tables` stores each embedding table (a `Gather` over a constant [rows, width]) in
int8 with one scale per row, dequantised after the lookup: a quarter of the memory, and a
table that is memory-mapped (`explain.host_memory.shared_initializers`) is a quarter of the pages
to touch.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHT_LEVELS = 63  # 7-bit weights, see the module docstring
ACTIVATION_LEVELS = 127
ZERO_POINT = 128
TABLE_LEVELS = 127
MS_DOMAIN = "com.microsoft"
PREFIX = "prism.q"  # names of the nodes and constants the rewrite adds
RESCORED = 8  # LM head candidates per row the `per-token` recipe rescores (`rescore_head`)
# The names `rescore_head` gives its nodes and values (`training.graph_candidates` widens its
# `TopK` to pick the greedy candidates from the same pass).
HEAD = f"{PREFIX}.head"
HEAD_TOPK, HEAD_K = f"{HEAD}.TopK", f"{HEAD}.k"
HEAD_TOP, HEAD_IDS = f"{HEAD}.top", f"{HEAD}.ids"
HEAD_RESCORED = f"{HEAD}.Rescored"


def constant_weight_matmuls(model: onnx.ModelProto) -> list[int]:
    """The positions of the MatMul nodes whose second input is a 2-D float32 initializer."""
    weights = {
        t.name
        for t in model.graph.initializer
        if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT
    }
    return [
        i for i, n in enumerate(model.graph.node) if n.op_type == "MatMul" and n.input[1] in weights
    ]


def quantise_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] float -> int8 [K, N] and float32 scales [N] (symmetric, per output channel)."""
    peak = np.abs(weight).max(axis=0)
    scale = np.where(peak > 0, peak / WEIGHT_LEVELS, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(weight / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS)
    return quantised.astype(np.int8), scale


def matmuls_feeding(model: onnx.ModelProto, *outputs: str) -> set[str]:
    """The constant-weight MatMuls whose results reach one of `outputs` without passing
    through another one (in the decoder, `logits`: the LM head)."""
    nodes = model.graph.node
    weighted = {nodes[i].name for i in constant_weight_matmuls(model)}
    producer = {out: node for node in nodes for out in node.output}
    found: set[str] = set()
    seen: set[str] = set()
    todo = list(outputs)
    while todo:
        name = todo.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        node = producer[name]
        if node.name in weighted:
            found.add(node.name)
        else:
            todo.extend(node.input)
    return found


def quantise_per_token(model: onnx.ModelProto, exclude: Collection[str] = ()) -> int:
    """Rewrite `model`'s constant-weight MatMuls (but those named in `exclude`) in place.

    Returns how many were rewritten. The float weights are removed from the graph."""
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = list(model.graph.node)
    targets = [i for i in constant_weight_matmuls(model) if nodes[i].name not in exclude]
    if not targets:
        return 0
    add_token_constants(model)
    quantised_inputs: dict[str, tuple[str, str]] = {}  # activation -> (uint8 tokens, scales)
    replacement: dict[int, list[onnx.NodeProto]] = {}
    used_weights: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            used_weights[name] = used_weights.get(name, 0) + 1
    for index in targets:
        node = nodes[index]
        x, weight_name = node.input[0], node.input[1]
        new: list[onnx.NodeProto] = []
        if x not in quantised_inputs:
            p = f"{PREFIX}.{len(quantised_inputs)}"
            new += quantise_tokens(x, p)
            quantised_inputs[x] = (f"{p}.u8", f"{p}.scale")
        tokens, scale = quantised_inputs[x]
        weight = numpy_helper.to_array(initializers[weight_name])
        w8, w_scale = quantise_weight(weight)
        q = f"{node.name or weight_name}.int8"
        model.graph.initializer.extend(
            [numpy_helper.from_array(w8, f"{q}.w"), numpy_helper.from_array(w_scale, f"{q}.ws")]
        )
        new.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [tokens, f"{q}.w", scale, f"{q}.ws", f"{PREFIX}.zp"],
                [node.output[0]],
                name=f"{q}.MM",
                domain=MS_DOMAIN,
            )
        )
        replacement[index] = new
        used_weights[weight_name] -= 1
    replace_nodes(model, nodes, replacement)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    unused = {name for name, uses in used_weights.items() if uses == 0}
    kept = [t for t in model.graph.initializer if t.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return len(targets)


def add_token_constants(model: onnx.ModelProto) -> None:
    """Add the constants `quantise_tokens` reads, unless an earlier rewrite added them."""
    if any(t.name == f"{PREFIX}.zp" for t in model.graph.initializer):
        return
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), f"{PREFIX}.eps"),
            numpy_helper.from_array(
                np.array(ACTIVATION_LEVELS, dtype=np.float32), f"{PREFIX}.levels"
            ),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{PREFIX}.one"),
            numpy_helper.from_array(np.array(ZERO_POINT, dtype=np.uint8), f"{PREFIX}.zp"),
        ]
    )


def quantise_tokens(
    x: str, p: str, *, levels: str = f"{PREFIX}.levels", zero_point: str = f"{PREFIX}.zp"
) -> list[onnx.NodeProto]:
    """The nodes that quantise activation `x` [..., width] per token: `{p}.u8` (the type of
    `zero_point`, the shape of `x`) and `{p}.scale` ([..., 1]), a token's peak magnitude over
    `levels`.

    Each token is divided by its scale, then rounded by one `QuantizeLinear` with scale 1 and
    zero point 128 (round half to even, saturate to 0..255: what `Div, Round, Add, Clip,
    Cast` compute, to the bit, in one pass instead of four). The earlier form, one
    `QuantizeLinear` per axis over `x` seen as [tokens, width], gave the same bits but needed
    five shape nodes (reshapes, a zero point per token) around it: a decoder step of bart-base
    ran about 200 fewer nodes without them."""
    node = helper.make_node
    return [
        node("Abs", [x], [f"{p}.abs"], name=f"{p}.Abs"),
        node("ReduceMax", [f"{p}.abs"], [f"{p}.peak"], axes=[-1], keepdims=1, name=f"{p}.Max"),
        node("Div", [f"{p}.peak", levels], [f"{p}.raw"], name=f"{p}.Div"),
        node("Max", [f"{p}.raw", f"{PREFIX}.eps"], [f"{p}.scale"], name=f"{p}.Floor"),
        node("Div", [x, f"{p}.scale"], [f"{p}.units"], name=f"{p}.Units"),
        node(
            "QuantizeLinear",
            [f"{p}.units", f"{PREFIX}.one", zero_point],
            [f"{p}.u8"],
            name=f"{p}.Quantise",
        ),
    ]


def rescore_head(model: onnx.ModelProto, head: str, output: str, candidates: int) -> bool:
    """Make the tied LM head's `candidates` best scores per row exact, in place.

    The head (`head`, a MatMul over the tied embedding, maybe followed by a bias `Add`, giving
    graph output `output`) is left to be quantised like any other MatMul, so its scores are
    approximate. Appended after it: the `candidates` highest approximate scores per row
    (`TopK`), their rows of the embedding table (a `Gather`, which `quantise_tables` then
    reads from the int8 table with its per-row scales), their products with the head's own
    input, plus their bias, written back over the approximate scores (`ScatterElements`).
    The argmax then falls on the best of the rescored candidates, which is the head's
    argmax unless it lay outside the approximate top `candidates`. Returns False, touching
    nothing, when the head is not a tied table's transpose or `output` is not its (biased)
    result."""
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = list(model.graph.node)
    matmul = next((n for n in nodes if n.name == head and n.op_type == "MatMul"), None)
    producer = {out: n for n in nodes for out in n.output}
    last = producer.get(output)
    if matmul is None or last is None or matmul.input[1] not in initializers:
        return False
    bias: str | None = None
    if last is not matmul:
        others = [i for i in last.input if i != matmul.output[0]]
        if last.op_type != "Add" or len(others) != 1 or others[0] not in initializers:
            return False
        bias = others[0]
    weight = numpy_helper.to_array(initializers[matmul.input[1]])
    table = next(
        (
            initializers[n.input[0]].name
            for n in nodes
            if n.op_type == "Gather"
            and n.input[0] in initializers
            and tuple(initializers[n.input[0]].dims) == weight.T.shape
            and np.array_equal(numpy_helper.to_array(initializers[n.input[0]]), weight.T)
        ),
        None,
    )
    if table is None:
        return False
    p = HEAD
    approx = f"{p}.approx"
    last.output[0] = approx
    constants = [
        numpy_helper.from_array(np.array([candidates], dtype=np.int64), HEAD_K),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}.last"),
    ]
    node = helper.make_node
    hidden = matmul.input[0]
    new = [
        node("TopK", [approx, HEAD_K], [HEAD_TOP, HEAD_IDS], axis=-1, name=HEAD_TOPK),
        node("Gather", [table, HEAD_IDS], [f"{p}.rows"], axis=0, name=f"{p}.Rows"),
        node("Unsqueeze", [hidden, f"{p}.last"], [f"{p}.column"], name=f"{p}.Column"),
        node("MatMul", [f"{p}.rows", f"{p}.column"], [f"{p}.dots"], name=f"{p}.Dots"),
        node("Squeeze", [f"{p}.dots", f"{p}.last"], [f"{p}.exact"], name=f"{p}.Exact"),
    ]
    scores = f"{p}.exact"
    if bias is not None:
        constants.append(
            numpy_helper.from_array(
                numpy_helper.to_array(initializers[bias]).reshape(-1), f"{p}.bias"
            )
        )
        new += [
            node("Gather", [f"{p}.bias", HEAD_IDS], [f"{p}.bias_k"], axis=0, name=f"{p}.BiasK"),
            node("Add", [scores, f"{p}.bias_k"], [f"{p}.scores"], name=f"{p}.AddBias"),
        ]
        scores = f"{p}.scores"
    new.append(
        node(
            "ScatterElements",
            [approx, HEAD_IDS, scores],
            [output],
            axis=-1,
            name=HEAD_RESCORED,
        )
    )
    model.graph.initializer.extend(constants)
    model.graph.node.extend(new)
    return True


def quantise_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[rows, width] float -> int8 [rows, width] and float32 scales [rows, 1] (symmetric)."""
    peak = np.abs(table).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / TABLE_LEVELS, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(table / scale), -TABLE_LEVELS, TABLE_LEVELS)
    return quantised.astype(np.int8), scale


def quantise_tables(model: onnx.ModelProto) -> int:
    """Rewrite every `Gather` over a constant 2-D float table (axis 0) into a lookup of int8
    rows and of their scales, multiplied back to float. Returns how many tables."""
    initializers = {t.name: t for t in model.graph.initializer}
    nodes = list(model.graph.node)
    lookups: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        table = initializers.get(node.input[0]) if node.op_type == "Gather" else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if (
            table is not None
            and len(table.dims) == 2
            and axis == 0
            and table.data_type == TensorProto.FLOAT
        ):
            lookups.setdefault(table.name, []).append(index)
    if not lookups:
        return 0
    others = {
        name
        for node in model.graph.node
        if node.op_type != "Gather"
        for name in node.input
        if name in lookups
    }
    replacement: dict[int, list[onnx.NodeProto]] = {}
    for name, positions in lookups.items():
        if name in others:
            continue  # the table is also read as a whole (a tied LM head): leave it float
        q, scale = quantise_table(numpy_helper.to_array(initializers[name]))
        initializers[name].CopyFrom(numpy_helper.from_array(q, name))
        model.graph.initializer.append(numpy_helper.from_array(scale, f"{name}.scale"))
        for k, index in enumerate(positions):
            node = nodes[index]
            p = f"{name}.lookup{k}"
            out, ids = node.output[0], node.input[1]
            rows = helper.make_node("Gather", [name, ids], [f"{p}.rows"], name=f"{p}.Rows", axis=0)
            replacement[index] = [
                rows,
                helper.make_node(
                    "Gather", [f"{name}.scale", ids], [f"{p}.scale"], name=f"{p}.Scales", axis=0
                ),
                helper.make_node(
                    "Cast", [f"{p}.rows"], [f"{p}.float"], to=TensorProto.FLOAT, name=f"{p}.Cast"
                ),
                helper.make_node("Mul", [f"{p}.float", f"{p}.scale"], [out], name=f"{p}.Mul"),
            ]
    replace_nodes(model, nodes, replacement)
    return len(lookups) - len(others & set(lookups))


def replace_nodes(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    replacement: dict[int, list[onnx.NodeProto]],
) -> None:
    """The graph's nodes in order, the one at each position in `replacement` by its list."""
    ordered = [new for i, node in enumerate(nodes) for new in replacement.get(i, [node])]
    new_nodes = [onnx.NodeProto() for _ in ordered]
    for target, source in zip(new_nodes, ordered, strict=True):
        target.CopyFrom(source)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)


def stamp(model: onnx.ModelProto, key: str, value: str) -> None:
    """Set one metadata entry of `model` (such as `explain.artifacts.ACTIVATION_SCALES`, how
    it scales its activations), keeping the others."""
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, key: value})
