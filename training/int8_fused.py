"""The `svd-head-k8-inplace` int8 recipe's two last rewrites: fewer nodes, no cache copies.

A decode step of 16 bart-base rows on one thread (ONNX Runtime's profiler, `svd-head-k8`,
Intel host with AMX, 2026-12-05) spends a few ms in nodes that are not model work, because
on this host the integer GEMM is fast (1.2-1.9 TMAC/s over 3,840 rows, `benchmarks.gemm_peak`)
and what is left is memory traffic and per-node costs:

- **Self-attention over a cache written in place** (`in_place_self_attention`). The exported
  step reorders the whole self-attention cache by `beam_idx` (a `Gather`), appends the new
  column (`Concat`: a second copy) and transposes the keys for the product (a third), then
  runs two `MatMul`s, the mask's `Add` and a `Softmax`, per layer and step. ONNX Runtime's
  `GroupQueryAttention` (contrib, CPU kernel in float32) does the same attention in one
  node: it writes the new key and value at each row's own position into the cache buffer it
  is given, and reads that row's first `seqlens_k + 1` columns. The runtime binds each
  layer's `past_*` and `present_*` to one host buffer, so nothing is copied
  (`explain.kv_cache`). Each row's position is its own: `decoder_position`, the tokens it
  already has, is `seqlens_k`; the graph loses `beam_idx` and `decoder_attention_mask`
  (beams reorder the buffer on the host; rows that join a running decode start at column 0
  of their own slot). Scratch timing: 32 steps of 16 rows 633-643 -> 592-603 ms. On random
  weights 13 of the 16 rows' tokens were the exported attention's; fed the same tokens, the
  caches were equal to the bit but for one row, where a last-bit difference moved a
  per-token activation scale at the third step.
- **The cross keys transposed** (`transpose_decoder_keys`). `training.int8_keys` scores the
  query against the uint8 keys as `MatMulInteger(keys, query^T)`: per row and head a
  [src, head_dim] x [head_dim, 1] product, one output column, the integer kernel's worst
  shape. The decoder here takes the keys [batch, heads, head_dim, src] and computes
  `MatMulInteger(query, keys)`, one row by `src` columns: 0.12 ms a layer against 0.44 ms
  (16 rows of 120 tokens, one thread, one-node graphs). The encoder is unchanged; the
  runtime turns the keys as it copies them into the batch's store (`OnnxSeq2Seq.encode`),
  because a `Transpose` after the encoder's blocked `QuantizeLinear` makes ONNX Runtime's
  transpose optimiser move the heads' split through that quantiser and break its scales.

Tried and left out: adding each projection's bias inside its `MatMulIntegerToFloat` (the op's
bias input) instead of in an `Add` after it. With zero biases (random weights) it saved
10 % of an encoder call, but ONNX Runtime adds the bias before it multiplies by a
non-scalar activation scale, so with the per-token scales here every biased output is
wrong: the default model's gate fell to 72 % identical answers.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain import artifacts
from training.graph_shapes import drop_dead_nodes, node_readers
from training.int8_tokens import replace_nodes, stamp
from training.int8_values import KEYS, cross_layers, drop_value_info

PREFIX = "prism.gqa"
_SEQLENS, _TOTAL, _LAST, _ONE = (f"{PREFIX}.{n}" for n in ("seqlens", "total", "last", "one"))
CACHE_COLUMNS = "cache_columns"  # the buffer's column axis, whatever its size


def in_place_self_attention(model: onnx.ModelProto) -> int:
    """Make each decoder layer's self-attention one `GroupQueryAttention` over a cache the
    runtime binds in place, in place (see the module docstring). Returns how many layers.

    Raises ValueError where a layer's `present_key_{i}` and `present_value_{i}` are not the
    exported `Concat(Gather(past, beam_idx), Transpose(Reshape(new)))`, or the attention is
    not `MatMul(Transpose(Reshape(q)), Transpose(present_key))` ... `MatMul(weights,
    present_value)` then `Transpose` and `Reshape` back to the model's width."""
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    producer = {out: n for n in graph.node for out in n.output}
    readers = node_readers(model)
    layers = 0
    while artifacts.present_names(layers)[0] in producer:
        layers += 1
    if not layers:
        return 0
    nodes = list(graph.node)
    position = {id(n): i for i, n in enumerate(nodes)}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    for layer in range(layers):
        past_key, past_value = artifacts.past_names(layer)
        present_key, present_value = artifacts.present_names(layer)
        heads = inputs[past_key].type.tensor_type.shape.dim[1].dim_value
        try:
            key, value = (_appended(producer, producer[p]) for p in (present_key, present_value))
            turned = next(n for n in readers[present_key] if n.op_type == "Transpose")
            scores = next(n for n in readers[turned.output[0]] if n.op_type == "MatMul")
            query = _reshaped(producer, scores.input[0])
            mixed = next(n for n in readers[present_value] if n.op_type == "MatMul")
            back = _only(readers, mixed.output[0], "Transpose")
            merged = _only(readers, back.output[0], "Reshape")
        except (KeyError, StopIteration, ValueError) as error:
            problem = f"decoder layer {layer}'s self-attention is not the exported one"
            raise ValueError(problem) from error
        if heads <= 0:
            raise ValueError(f"{past_key} needs a static head count")
        fused = helper.make_node(
            "GroupQueryAttention",
            [query, key, value, past_key, past_value, _SEQLENS, _TOTAL],
            [merged.output[0], present_key, present_value],
            domain="com.microsoft",
            num_heads=heads,
            kv_num_heads=heads,
            scale=1.0,  # BART scales the query by head_dim ** -0.5 itself
            name=f"{PREFIX}.{layer}",
        )
        replacement[position[id(merged)]] = [fused]
        for concat in (producer[present_key], producer[present_value]):
            replacement[position[id(concat)]] = []
    node = helper.make_node
    first = [
        node("Cast", ["decoder_position"], [_SEQLENS], to=TensorProto.INT32, name=_SEQLENS),
        node("ReduceMax", [_SEQLENS], [_LAST], keepdims=0, name=f"{_LAST}.Max"),
        node("Add", [_LAST, _ONE], [_TOTAL], name=f"{_TOTAL}.Add"),
    ]
    replacement[0] = [*first, *replacement.get(0, [nodes[0]])]
    graph.initializer.append(numpy_helper.from_array(np.array(1, dtype=np.int32), _ONE))
    replace_nodes(model, nodes, replacement)
    drop_dead_nodes(model)
    read = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.input if i.name in read]
    del graph.input[:]
    graph.input.extend(kept)
    for value in [*graph.input, *graph.output]:
        if value.name.startswith(("past_", "present_")):
            value.type.tensor_type.shape.dim[2].dim_param = CACHE_COLUMNS
    drop_value_info(model, {i.name for i in graph.input} | {o.name for o in graph.output})
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    stamp(model, artifacts.SELF_ATTENTION_CACHE, artifacts.IN_PLACE)
    return layers


def transpose_decoder_keys(model: onnx.ModelProto) -> int:
    """Make the decoder take `cross_key_{i}` [batch, heads, head_dim, src] and score its query
    row [batch, heads, 1, head_dim] against them as `MatMulInteger(query, keys)`, in place
    (a product of one row by `src` columns: at bart-base, 16 rows, one thread, 0.12 ms a layer
    against 0.44 for `training.int8_keys`' column form, a `src`-row by one-column product).
    Returns how many layers; raises ValueError where `training.int8_keys`' nodes are missing."""
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    layers = cross_layers(list(inputs), "key")
    if not layers:
        return 0
    nodes = {n.name: n for n in graph.node}
    order = list(graph.node)
    position = {id(n): i for i, n in enumerate(order)}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    for layer in layers:
        p = f"{KEYS}{layer}"
        query, product, key_scale = (nodes.get(f"{p}.{n}") for n in ("QT", "Product", "KeyScale"))
        if query is None or product is None or key_scale is None:
            raise ValueError(f"layer {layer}'s keys are not scored as training.int8_keys does")
        name, scale = artifacts.cross_names(layer)[0], artifacts.cross_key_scale_name(layer)
        query.input[1] = f"{p}.row"  # [batch, heads, 1, head_dim]: the row, not the column
        product.input[0], product.input[1] = query.output[0], name
        turned = f"{p}.scale_row"
        key_scale.input[list(key_scale.input).index(scale)] = turned
        reshape = helper.make_node("Reshape", [scale, f"{p}.row"], [turned], name=f"{turned}.R")
        replacement[position[id(key_scale)]] = [reshape, key_scale]
        _swap_last(inputs[name])
    replace_nodes(model, order, replacement)
    # Shapes recorded for the scores' old form go (ONNX Runtime would check against them).
    changed = tuple(f"{KEYS}{layer}." for layer in layers)
    drop_value_info(model, {v.name for v in graph.value_info if v.name.startswith(changed)})
    stamp(model, artifacts.CROSS_KEY_LAYOUT, artifacts.KEYS_TRANSPOSED)
    return len(layers)


def _swap_last(value: onnx.ValueInfoProto) -> None:
    dims = value.type.tensor_type.shape.dim
    third, fourth = onnx.TensorShapeProto.Dimension(), onnx.TensorShapeProto.Dimension()
    third.CopyFrom(dims[2])
    fourth.CopyFrom(dims[3])
    dims[2].CopyFrom(fourth)
    dims[3].CopyFrom(third)


def _appended(producer: dict[str, onnx.NodeProto], concat: onnx.NodeProto) -> str:
    """The new column's value [batch, 1, width] a cache `Concat` appends."""
    if concat.op_type != "Concat" or len(concat.input) != 2:
        raise ValueError("not a cache Concat")
    gather = producer[concat.input[0]]
    if gather.op_type != "Gather" or gather.input[1] != "beam_idx":
        raise ValueError("the cache is not reordered by beam_idx")
    return _reshaped(producer, concat.input[1])


def _reshaped(producer: dict[str, onnx.NodeProto], name: str) -> str:
    """What `Transpose(Reshape(x))` named `name` splits into heads: x."""
    turned = producer[name]
    if turned.op_type != "Transpose":
        raise ValueError(f"{name} is not a Transpose")
    reshape = producer[turned.input[0]]
    if reshape.op_type != "Reshape":
        raise ValueError(f"{turned.input[0]} is not a Reshape")
    return str(reshape.input[0])


def _only(readers: dict[str, list[onnx.NodeProto]], name: str, op_type: str) -> onnx.NodeProto:
    found = readers.get(name, [])
    if len(found) != 1 or found[0].op_type != op_type:
        raise ValueError(f"{name} is not read by one {op_type}")
    return found[0]
