"""The cross-attention values in int8, for the `per-token-split-v8` int8 recipe
(`training.variants`).

A running decode holds every row's cross keys and values for as long as the row decodes: at
bart-base, 32 rows of 200 source tokens are 236 MB in fp32, the largest part of the service's
peak memory. This rewrite halves the share of the values (and so cuts the total by 3/8):

- the encoder hands each layer's values over in 8 bits, one scale per token and head
  (`cross_value_{i}` [batch, heads, src, head_dim] uint8 around 128, `cross_value_scale_{i}`
  [batch, heads, src, 1] float), quantised in the graph by the chain `training.int8_tokens`
  uses;
- the decoder computes the attention output `P @ V` on the integer GEMM: with `V = Vq * s`
  (s per source token), `P @ V = (P * s^T) @ Vq`; `P * s^T` (non-negative) is quantised per
  query row to uint8 with 255 levels, and `MatMulInteger(u8, u8)` reads a quarter of the
  bytes the float product read.

The values are uint8 with zero point 128 (the chain's own form), not int8: on AVX2 without
VNNI, ONNX Runtime's u8 x s8 kernel adds pairs of products in 16 bits, and 255 x 127 x 2
saturates; its u8 x u8 kernel widens first. The recipe built with int8 values kept 97.81 %
of the gate's answers, with uint8 values 98.16 %.

The keys stay in fp32 in this recipe (`training.int8_keys` puts them in 8 bits for
`svd-head-k8`, with `quantise_encoder_keys` below): scores are far more sensitive than
values. On the embedded default model's 1,960 gate requests (2026-12-03 build, int8
`per-token-split` graphs, fake-quantised in the graph to measure each part): unchanged
98.32 % identical to fp32; values in int8 and `P` in uint8 98.16 % (the built recipe:
98.16 %); `P` alone 98.11 %; `P` with 127 levels 97.81 %, values with 63 97.96 %; keys in
int8 as well, with the query and `P` quantised for an integer GEMM, 97.86 % (keys per token)
and 97.96 % (per channel), below the 98 % gate; keys in int8 multiplied in float
(fake-quantised on the host, values int8, `P` float) 98.06 % per token and 98.11 % per
channel, but that needs a cast per step. At the bart-base shape one layer's `P @ V` for 32
rows of 200 tokens took 0.2-0.5 ms against 0.7-1.1 ms in fp32 (one-node graphs, 2 threads,
inputs rotated through 12 copies so they come from memory); a `Cast` of int8 values to
float, the other way to keep them small, took 1.8-4.9 ms.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explain import artifacts
from training.int8_tokens import PREFIX, add_token_constants, quantise_tokens, replace_nodes

VALUES = f"{PREFIX}.v"  # names of what the rewrite adds
KEYS = f"{PREFIX}.k"
WEIGHT_LEVELS = 255  # the attention weights times the value scales: non-negative, uint8


def _constants(model: onnx.ModelProto, wanted: dict[str, np.ndarray]) -> None:
    add_token_constants(model)
    names = {t.name for t in model.graph.initializer}
    model.graph.initializer.extend(
        numpy_helper.from_array(value, name) for name, value in wanted.items() if name not in names
    )


def cross_layers(names: list[str], kind: str = "value") -> list[int]:
    """The layers whose `cross_{kind}_{i}` is among `names`."""
    return sorted(int(m[1]) for n in names if (m := re.fullmatch(rf"cross_{kind}_(\d+)", n)))


def scale_info(values: onnx.ValueInfoProto, scale: str) -> onnx.ValueInfoProto:
    """[batch, heads, src, 1] float named `scale`, the first three dimensions as `values`
    names them."""
    dims = values.type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims[:3]] + [1]
    return helper.make_tensor_value_info(scale, TensorProto.FLOAT, shape)


def quantise_encoder_values(model: onnx.ModelProto) -> int:
    """Make the encoder's `cross_value_{i}` outputs uint8 around 128 with a scale per token
    and head, in place. Returns how many it rewrote."""
    return _quantise_encoder_outputs(model, "value")


def quantise_encoder_keys(model: onnx.ModelProto) -> int:
    """Make the encoder's `cross_key_{i}` outputs uint8 around 128 with a scale per token and
    head (`cross_key_scale_{i}`), in place (`training.int8_keys`). Returns how many."""
    return _quantise_encoder_outputs(model, "key")


def _quantise_encoder_outputs(model: onnx.ModelProto, kind: str) -> int:
    outputs = {o.name: o for o in model.graph.output}
    layers = cross_layers(list(outputs), kind)
    if not layers:
        return 0
    add_token_constants(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    added: list[onnx.NodeProto] = []
    for layer in layers:
        keys = kind == "key"
        name = artifacts.cross_names(layer)[0 if keys else 1]
        scale = (artifacts.cross_key_scale_name if keys else artifacts.cross_value_scale_name)(
            layer
        )
        p = f"{KEYS if keys else VALUES}{layer}"
        producer = producers[name]
        producer.output[list(producer.output).index(name)] = f"{p}.x"
        chain = quantise_tokens(f"{p}.x", p)
        for node in chain:
            for io in (node.input, node.output):
                for k, value in enumerate(io):
                    io[k] = {f"{p}.u8": name, f"{p}.scale": scale}.get(value, value)
        added += chain
        outputs[name].type.tensor_type.elem_type = TensorProto.UINT8
        model.graph.output.append(scale_info(outputs[name], scale))
    model.graph.node.extend(added)
    drop_value_info(model, {o.name for o in model.graph.output})
    return len(layers)


def quantise_decoder_values(model: onnx.ModelProto) -> int:
    """Make the decoder take uint8 `cross_value_{i}` with `cross_value_scale_{i}` and compute
    each cross-attention output on the integer GEMM, in place. Returns how many layers."""
    inputs = {i.name: i for i in model.graph.input}
    layers = cross_layers(list(inputs))
    if not layers:
        return 0
    _constants(
        model,
        {
            f"{VALUES}.u8zero": np.array(0, dtype=np.uint8),
            f"{VALUES}.weight_levels": np.array(WEIGHT_LEVELS, dtype=np.float32),
        },
    )
    node = helper.make_node
    readers: dict[str, list[int]] = {}
    for index, n in enumerate(model.graph.node):
        for name in n.input:
            readers.setdefault(name, []).append(index)
    replacement: dict[int, list[onnx.NodeProto]] = {}
    for layer in layers:
        name = artifacts.cross_names(layer)[1]
        scale = artifacts.cross_value_scale_name(layer)
        uses = readers.get(name, [])
        product = model.graph.node[uses[0]] if len(uses) == 1 else None
        if product is None or product.op_type != "MatMul" or list(product.input[1:]) != [name]:
            raise ValueError(f"{name} is not read by exactly one MatMul as its right operand")
        p = f"{VALUES}{layer}"
        weights = product.input[0]
        replacement[uses[0]] = [
            node("Transpose", [scale], [f"{p}.scaleT"], perm=[0, 1, 3, 2], name=f"{p}.ScaleT"),
            node("Mul", [weights, f"{p}.scaleT"], [f"{p}.w"], name=f"{p}.Weigh"),
            *quantise_tokens(
                f"{p}.w",
                f"{p}.w",
                levels=f"{VALUES}.weight_levels",
                zero_point=f"{VALUES}.u8zero",
            ),
            node(
                "MatMulInteger",
                [f"{p}.w.u8", name, "", f"{PREFIX}.zp"],
                [f"{p}.i32"],
                name=f"{p}.Product",
            ),
            node("Cast", [f"{p}.i32"], [f"{p}.f"], to=TensorProto.FLOAT, name=f"{p}.Cast"),
            node("Mul", [f"{p}.f", f"{p}.w.scale"], [product.output[0]], name=f"{p}.Scale"),
        ]
        inputs[name].type.tensor_type.elem_type = TensorProto.UINT8
        model.graph.input.append(scale_info(inputs[name], scale))
    replace_nodes(model, list(model.graph.node), replacement)
    drop_value_info(model, {i.name for i in model.graph.input})
    return len(layers)


def drop_value_info(model: onnx.ModelProto, names: set[str]) -> None:
    """Remove the intermediate type annotations of `names`: values that are now graph inputs
    or outputs, or whose type or shape a rewrite changed."""
    kept = [v for v in model.graph.value_info if v.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
