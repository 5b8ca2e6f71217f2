"""The `svd-head-k8-lean` int8 recipe's rewrites of the decoder: fewer nodes, no unread work.

Profiled at the bart-base shape (`svd-head-k8-inplace`, a static batch of 32 in two lanes of
one thread, Intel host with AMX, 2026-12-05), a decode step of 16 rows ran about 880 nodes in
17-20 ms, about 3 ms of it outside the kernels (ONNX Runtime's own work per node); its integer
products took about 7-8 ms where their 0.95 GMAC would take 3-4 ms at the kernel's speed
on 16 rows alone (244-348 GMAC/s, one thread). These rewrites change no value a step
computes, only what runs to compute it:

- **Sibling products packed** (`pack_products`). A layer's query, key and value projections
  read the same uint8 tokens and scales; they become one `MatMulIntegerToFloat` over their
  weights side by side, one bias `Add` and a `Split`. Each output column is the same integer
  sum times the same two scales, so the result is the same to the bit.
- **Packed attention** (`pack_self_attention`). A `GroupQueryAttention` whose query (times
  head_dim ** -0.5), key and value are the three parts of one packed product takes the
  packed tensor whole (the op's packed-QKV form: no `Split`), and the query's `Mul` becomes
  the op's `scale`. With a power-of-two factor (0.125 at head_dim 64) scaling the query or
  the scores gives the same bits; with another the last bit may differ.
- **Logits only when asked for** (`logits_on_request`). The rescored head writes its exact
  candidate scores into the vocabulary-wide preview (`ScatterElements`: a copy of [rows,
  vocabulary] floats a step) only for the `logits` output, which greedy and beam steps do
  not read (they read `top_ids` and `top_scores`), but ONNX Runtime runs every node of a
  graph whatever outputs a call fetches. The scatter moves into an `If` on a new boolean
  input, `artifacts.WANT_LOGITS`, which `explain.session.OnnxSession` sets from the outputs
  a call fetches (`logits` is [0, 0] when not asked for). The head's `Add` of an all-zero
  `final_logits_bias` (a pretrained BART's is a zero buffer; the embedded default model's
  is not, and keeps it) goes too (`drop_zero_bias`: x + 0 is x).

Measured (bart-base shape, random weights, 32 rows of 120 tokens, exactly 32 new tokens,
two lanes of one thread, alternating runs in one process, 2026-12-05): 0.827 s a batch
against 0.861 s for `svd-head-k8-inplace` (the encoder unchanged, 0.388 against 0.389 s),
every row's tokens identical. Tried and left out, each no faster in the same set-up: the
encoder's projections packed as well (its twelve cross-attention key and value projections
in one product made encoding slower, 0.415 against 0.390 s; its query, key and value alone
changed nothing), the scale floor (`Max(scale, 1e-12)`) dropped where a zero scale gives the
same result, and a token's peak as `Max(ReduceMax(x), -ReduceMin(x))` instead of through
`Abs`. `MatMulNBits` with 8-bit or 4-bit weights and int8 compute (one node instead of the
quantiser and the product) ran 2-8x slower, by block size and rows, than the integer GEMM
chain on this host's ONNX Runtime 1.32 (768 x 3,072 weight, 16 to 3,840 rows, one thread).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain import artifacts
from training.graph_shapes import drop_dead_nodes, node_readers
from training.int8_tokens import HEAD, replace_nodes

PACK = "prism.pack"
MS_DOMAIN = "com.microsoft"
FINAL_BIAS = "final_logits_bias"


def _rewritten(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    replacement: dict[int, list[onnx.NodeProto]],
    count: int,
) -> int:
    """`replace_nodes` then `drop_dead_nodes` where `count` rewrites were found; `count`."""
    if count:
        replace_nodes(model, nodes, replacement)
        drop_dead_nodes(model)
    return count


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of `name` where it is an initializer, a `Constant` node's output or an
    `Identity` of one (the exporter names one shared zero bias for many layers that way)."""
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for node in model.graph.node:
        if node.output and node.output[0] == name:
            if node.op_type == "Identity":
                return _constant(model, node.input[0])
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        return numpy_helper.to_array(attribute.t)
    return None


def _bias_of(
    model: onnx.ModelProto, readers: dict[str, list[onnx.NodeProto]], product: onnx.NodeProto
) -> tuple[onnx.NodeProto, np.ndarray] | None:
    """The bias `Add` that is the only reader of `product`'s output, and its 1-D constant."""
    after = readers.get(product.output[0], [])
    if len(after) != 1 or after[0].op_type != "Add":
        return None
    add = after[0]
    other = add.input[1] if add.input[0] == product.output[0] else add.input[0]
    bias = _constant(model, other)
    if bias is None or bias.ndim != 1:
        return None
    return add, bias


def pack_products(model: onnx.ModelProto, most: int = 3) -> int:
    """Pack the `MatMulIntegerToFloat`s that share their tokens, scales and zero point and
    have constant weights, each followed by a bias `Add` (or none followed by one), into one
    product per group of at most `most`, in place. Returns how many groups."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    readers = node_readers(model)
    groups: dict[tuple[str, ...], list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        if (
            node.op_type == "MatMulIntegerToFloat"
            and len(node.input) == 5
            and node.input[1] in initializers
            and node.input[3] in initializers
        ):
            groups[(node.input[0], node.input[2], node.input[4])].append(node)
    nodes = list(graph.node)
    position = {id(n): i for i, n in enumerate(nodes)}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    packed = 0
    for (tokens, scale, zero_point), members in groups.items():
        if not 2 <= len(members) <= most:
            continue
        weights = [numpy_helper.to_array(initializers[m.input[1]]) for m in members]
        if len({w.shape[0] for w in weights}) != 1 or any(w.ndim != 2 for w in weights):
            continue
        biases = [_bias_of(model, readers, m) for m in members]
        biased = all(b is not None for b in biases)
        if not biased and any(b is not None for b in biases):
            continue
        p = f"{PACK}.{packed}"
        w_scales = [numpy_helper.to_array(initializers[m.input[3]]) for m in members]
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.concatenate(weights, axis=1), f"{p}.w"),
                numpy_helper.from_array(np.concatenate(w_scales).astype(np.float32), f"{p}.ws"),
                numpy_helper.from_array(np.array([w.shape[1] for w in weights]), f"{p}.sizes"),
            ]
        )
        ends = [b[0].output[0] for b in biases if b is not None] if biased else []
        outputs = ends or [m.output[0] for m in members]
        new = [
            helper.make_node(
                "MatMulIntegerToFloat",
                [tokens, f"{p}.w", scale, f"{p}.ws", zero_point],
                [f"{p}.product"],
                name=f"{p}.MM",
                domain=MS_DOMAIN,
            )
        ]
        split_from = f"{p}.product"
        if biased:
            bias = np.concatenate([b[1] for b in biases if b is not None]).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(bias, f"{p}.bias"))
            new.append(
                helper.make_node("Add", [split_from, f"{p}.bias"], [f"{p}.sum"], name=f"{p}.Add")
            )
            split_from = f"{p}.sum"
        new.append(
            helper.make_node(
                "Split", [split_from, f"{p}.sizes"], outputs, axis=-1, name=f"{p}.Split"
            )
        )
        first = min(position[id(m)] for m in members)
        replacement[first] = new
        for member, found in zip(members, biases, strict=True):
            replacement.setdefault(position[id(member)], [])
            if found is not None:
                replacement[position[id(found[0])]] = []
        packed += 1
    return _rewritten(model, nodes, replacement, packed)


def pack_self_attention(model: onnx.ModelProto) -> int:
    """Feed each `GroupQueryAttention` whose query (times a constant), key and value are the
    three parts of one packed product's `Split` the packed tensor whole, in place. Returns
    how many."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    readers = node_readers(model)
    nodes = list(graph.node)
    position = {id(n): i for i, n in enumerate(nodes)}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    done = 0
    for node in nodes:
        if node.op_type != "GroupQueryAttention" or len(node.input) < 3 or not node.input[1]:
            continue
        scaled = producer.get(node.input[0])
        if scaled is None or scaled.op_type != "Mul":
            continue
        query, factor_name = scaled.input
        factor = _constant(model, factor_name)
        if factor is None:
            query, factor_name = factor_name, query
            factor = _constant(model, factor_name)
        split = producer.get(query)
        if factor is None or factor.size != 1 or split is None or split.op_type != "Split":
            continue
        if list(split.output) != [query, node.input[1], node.input[2]]:
            continue
        if any(len(readers[o]) != 1 for o in split.output):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attributes["scale"] = float(attributes.get("scale", 1.0)) * float(factor.reshape(()))
        fused = helper.make_node(
            "GroupQueryAttention",
            [split.input[0], "", "", *node.input[3:]],
            list(node.output),
            name=node.name,
            domain=node.domain,
            **attributes,
        )
        replacement[position[id(node)]] = [fused]
        replacement[position[id(scaled)]] = []
        replacement[position[id(split)]] = []
        done += 1
    return _rewritten(model, nodes, replacement, done)


def drop_zero_bias(model: onnx.ModelProto) -> int:
    """Remove the LM head's `Add`s of an all-zero `final_logits_bias` (BART's is a zero
    buffer) and of the rescored candidates' share of it, in place. Returns how many."""
    graph = model.graph
    zero = {
        t.name
        for t in graph.initializer
        if t.name in (FINAL_BIAS, f"{HEAD}.bias") and not numpy_helper.to_array(t).any()
    }
    gathered = {n.output[0] for n in graph.node if n.op_type == "Gather" and n.input[0] in zero}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Add" or node.output[0] in outputs:
            continue
        for keep, other in ((0, 1), (1, 0)):
            if node.input[other] in zero | gathered:
                rename[node.output[0]] = node.input[keep]
                break
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    drop_dead_nodes(model)
    return len(rename)


def logits_on_request(model: onnx.ModelProto) -> bool:
    """Compute the `logits` output only when the new boolean input `artifacts.WANT_LOGITS`
    is true (else an empty [0, 0] tensor), in place, where `logits` comes from the rescored
    head's `ScatterElements`. Returns whether it did. Run it last: `drop_dead_nodes` does not
    see what an `If` branch reads."""
    graph = model.graph
    logits = artifacts.LOGITS
    scatter = next((n for n in graph.node if logits in n.output), None)
    if scatter is None or scatter.op_type != "ScatterElements":
        return False
    out = next(o for o in graph.output if o.name == logits)
    elem = out.type.tensor_type.elem_type
    then_out = helper.make_tensor_value_info(f"{logits}.full", elem, None)
    else_out = helper.make_tensor_value_info(f"{logits}.none", elem, None)
    inner = onnx.NodeProto()
    inner.CopyFrom(scatter)
    del inner.output[:]
    inner.output.append(then_out.name)
    then_branch = helper.make_graph([inner], f"{logits}.then", [], [then_out])
    empty = numpy_helper.from_array(
        np.zeros((0, 0), dtype=helper.tensor_dtype_to_np_dtype(elem)), f"{logits}.empty"
    )
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], [else_out.name], value=empty)],
        f"{logits}.else",
        [],
        [else_out],
    )
    wrapped = helper.make_node(
        "If",
        [artifacts.WANT_LOGITS],
        [logits],
        then_branch=then_branch,
        else_branch=else_branch,
        name=f"{logits}.OnRequest",
    )
    nodes = list(graph.node)
    index = next(i for i, n in enumerate(nodes) if logits in n.output)
    replace_nodes(model, nodes, {index: [wrapped]})
    graph.input.append(helper.make_tensor_value_info(artifacts.WANT_LOGITS, TensorProto.BOOL, []))
    dims = out.type.tensor_type.shape.dim
    for dim, name in zip(dims, ("logits_rows", "logits_columns")[: len(dims)], strict=True):
        dim.Clear()
        dim.dim_param = name  # [0, 0] when not asked for
    return True


def lean_decoder(model: onnx.ModelProto) -> dict[str, int]:
    """All of this module's rewrites of an in-place int8 decoder, in place; run after every
    other rewrite (see `logits_on_request`). Returns how many of each were made."""
    made = {
        "packed": pack_products(model),
        "attention": pack_self_attention(model),
        "zero_bias": drop_zero_bias(model),
    }
    made["logits_on_request"] = int(logits_on_request(model))
    return made
