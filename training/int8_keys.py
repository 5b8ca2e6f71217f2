"""The cross-attention keys in int8, for the `svd-head-k8` int8 recipe (`training.variants`).

At batch 32 a bart-base decode step (2 lanes of 16 rows, one thread each, ONNX Runtime's
profiler, 2026-12-05) spent 3.8 of about 25 ms on the cross-attention scores, a product of
one query row with fp32 keys that every step reads again: 35 MB a lane at 120 source tokens.
This rewrite hands the keys over in 8 bits, as `training.int8_values` does the values:

- the encoder quantises each layer's keys per token and head (`quantise_encoder_keys`:
  `cross_key_{i}` uint8 around 128, `cross_key_scale_{i}` [batch, heads, src, 1]);
- the decoder quantises the query per row and head the same way and computes the scores on
  the integer GEMM: with `K = (Kq - 128) * k` and `q = (qq - 128) * s`,

      q @ K^T = ((Kq - 128) @ (qq - 128)^T * k * s)^T

  as `MatMulInteger(Kq, qq^T)` [batch, heads, src, 1], which keeps the keys in the layout
  the running decode stores them in (the query, one row a head, only reshaped), scaled by the
  keys' scales (already [.., src, 1]) and the query's, then reshaped to the scores'
  [.., 1, src].

On the 2026-12-05 default model's 1,960 gate requests: built, 98.11 % of answers identical to
fp32, every bar passed (`svd-head` alone: 98.32 %); fake-quantised in a copy of the decoder
graph beforehand, 98.21 % with the keys alone in 8 bits and 98.11 % with the query too. In
the 2026-12-03 measurement on older weights the same form had kept 97.86 %.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain import artifacts
from training.int8_tokens import PREFIX, add_token_constants, quantise_tokens, replace_nodes
from training.int8_values import KEYS, cross_layers, drop_value_info, scale_info

TRANSPOSE_LAST = [0, 1, 3, 2]
SPLIT_HEADS = [0, 2, 1, 3]  # [batch, 1, heads, head_dim] -> [batch, heads, 1, head_dim]


def quantise_decoder_keys(model: onnx.ModelProto) -> int:
    """Make the decoder take uint8 `cross_key_{i}` with `cross_key_scale_{i}` and compute each
    cross-attention's scores on the integer GEMM, in place. Returns how many layers; raises
    ValueError where a key is not read as `Transpose` (last two axes) then the right operand
    of one `MatMul` whose query is a `Transpose` splitting the heads.

    The decoder runs one token a step, so the query is one row a head: it is quantised before
    its heads are split (over the same head_dim values) and only reshaped after, since ONNX
    Runtime's transpose optimiser, moving a `Transpose` through a blocked `QuantizeLinear`,
    leaves the scales' shape behind (`x_scale and x must have the same shape`)."""
    inputs = {i.name: i for i in model.graph.input}
    layers = cross_layers(list(inputs), "key")
    if not layers:
        return 0
    add_token_constants(model)
    node = helper.make_node
    nodes = list(model.graph.node)
    readers: dict[str, list[int]] = {}
    for index, n in enumerate(nodes):
        for name in n.input:
            readers.setdefault(name, []).append(index)
    position = {out: i for i, n in enumerate(nodes) for out in n.output}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    constants: dict[str, np.ndarray] = {}
    for layer in layers:
        name = artifacts.cross_names(layer)[0]
        scale = artifacts.cross_key_scale_name(layer)
        dims = inputs[name].type.tensor_type.shape.dim
        heads = dims[1].dim_value
        transpose = _single_reader(nodes, readers, name, "Transpose", TRANSPOSE_LAST)
        product = (
            _single_reader(nodes, readers, transpose.output[0], "MatMul")
            if transpose is not None
            else None
        )
        at = position.get(product.input[0]) if product is not None else None
        split = nodes[at] if at is not None else None
        if (
            heads <= 0
            or transpose is None
            or product is None
            or list(product.input[1:]) != [transpose.output[0]]
            or split is None
            or _perm(split) != SPLIT_HEADS
            or len(readers.get(split.output[0], [])) != 1
        ):
            raise ValueError(
                f"{name} is not read by Transpose(0, 1, 3, 2) then one MatMul whose query "
                "splits its heads with Transpose(0, 2, 1, 3)"
            )
        p = f"{KEYS}{layer}"
        constants[f"{p}.column"] = np.array([0, heads, -1, 1], dtype=np.int64)
        constants[f"{p}.row"] = np.array([0, heads, 1, -1], dtype=np.int64)
        replacement[readers[name][0]] = []  # the keys are read as they are stored
        replacement[position[split.output[0]]] = []  # the query is split by a reshape
        replacement[readers[transpose.output[0]][0]] = [
            *quantise_tokens(split.input[0], f"{p}.q"),  # [batch, 1, heads, head_dim]
            node("Reshape", [f"{p}.q.u8", f"{p}.column"], [f"{p}.qT"], name=f"{p}.QT"),
            node(
                "MatMulInteger",
                [name, f"{p}.qT", f"{PREFIX}.zp", f"{PREFIX}.zp"],
                [f"{p}.i32"],
                name=f"{p}.Product",
            ),
            node("Cast", [f"{p}.i32"], [f"{p}.f"], to=TensorProto.FLOAT, name=f"{p}.Cast"),
            node("Mul", [f"{p}.f", scale], [f"{p}.k"], name=f"{p}.KeyScale"),
            node("Reshape", [f"{p}.q.scale", f"{p}.column"], [f"{p}.qs"], name=f"{p}.QScale"),
            node("Mul", [f"{p}.k", f"{p}.qs"], [f"{p}.kq"], name=f"{p}.QueryScale"),
            node("Reshape", [f"{p}.kq", f"{p}.row"], list(product.output), name=f"{p}.Row"),
        ]
        inputs[name].type.tensor_type.elem_type = TensorProto.UINT8
        model.graph.input.append(scale_info(inputs[name], scale))
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    replace_nodes(model, nodes, replacement)
    drop_value_info(model, {i.name for i in model.graph.input})
    return len(layers)


def _perm(transpose: onnx.NodeProto) -> list[int] | None:
    if transpose.op_type != "Transpose":
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in transpose.attribute}
    return list(attributes["perm"]) if "perm" in attributes else None


def _single_reader(
    nodes: list[onnx.NodeProto],
    readers: dict[str, list[int]],
    value: str,
    op_type: str,
    perm: list[int] | None = None,
) -> onnx.NodeProto | None:
    """The one node reading `value`, if it is an `op_type` (a Transpose by `perm`)."""
    uses = readers.get(value, [])
    if len(uses) != 1 or nodes[uses[0]].op_type != op_type:
        return None
    found = nodes[uses[0]]
    return found if perm is None or _perm(found) == perm else None
