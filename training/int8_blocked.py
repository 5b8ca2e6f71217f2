"""The per-token quantisers as one `QuantizeLinear` each (ONNX opset 21's blocked form).

`training.int8_tokens.quantise_tokens` rounds a token by dividing it by its scale (`Div`)
and quantising the quotient with scale 1 and zero point 128 (`QuantizeLinear`): opset 17's
`QuantizeLinear` takes one scale per tensor or per axis, not one per token. Opset 21's takes
a scale per block along an axis; with the last axis and a block at least as wide as the
token, that is one scale per token, and the op divides and rounds in one pass:

    QuantizeLinear(x, scale [..., 1], zero_point [..., 1] of 128, axis=-1, block_size=width)

The zero point must have the scale's shape, so each group of quantisers whose activations
share their leading dimensions (known from ONNX shape inference on the graph before the
rewrite: all of the encoder's token rows, [batch, 1] and [batch] in the decoder) reads one
zero-point tensor, expanded once per run from the first scale of the group; a quantiser whose
activation's shape is not known gets its own.

The result is the same to the bit: ONNX Runtime's blocked kernel divides by the scale and
rounds half to even as the `Div` and `QuantizeLinear` pair did (the uint8 tokens of both forms
were identical in a 16- and a 480-row test, and the bart-base int8 graphs decoded the same
tokens for 32 rows of random weights, which flip on any changed bit). It is a pass over each
activation fewer: one quantiser of 480 x 768 took 120 instead of 209 us (one thread), and a
static batch of 32 at the bart-base shape (int8 `per-token-v8`, two lanes of one thread,
alternating runs, 2026-12-04) took 1.25-1.29 s against 1.29-1.34 s. int8 with no zero point
(which needs no per-token tensor) is not an option: ONNX Runtime's int8 x int8
`MatMulIntegerToFloat` took 2.5-4.6 ms where uint8 x int8 took 0.05-0.2 ms.

The graph is converted to opset 21 first (`onnx.version_converter`; the other nodes keep
their meaning, e.g. `ReduceMax` takes its axes as an input from opset 18 on).
"""

from __future__ import annotations

import logging

import onnx
from onnx import helper, version_converter

from training.int8_tokens import PREFIX, replace_nodes

logger = logging.getLogger(__name__)

OPSET = 21  # blocked QuantizeLinear
# A block size for activations whose width is unknown: the spec accepts any block at least
# as long as the axis when the scale has one entry along it.
ANY_WIDTH = 1 << 30
ZERO_POINTS = f"{PREFIX}.zp_tokens"

Dims = tuple[int | str, ...]


def activation_shapes(model: onnx.ModelProto) -> dict[str, Dims]:
    """The shapes ONNX shape inference gives `model`'s values: ints, symbolic names, or 0
    where a dimension is unknown. None known (every quantiser then gets its own zero point)
    where inference cannot run, e.g. on a graph over protobuf's 2 GB."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except ValueError:
        logger.warning("shape inference failed; each token quantiser gets its own zero point")
        return {}
    return {
        v.name: tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in [*inferred.value_info, *inferred.input]
        if v.type.tensor_type.HasField("shape")
    }


def block_token_quantisers(model: onnx.ModelProto, shapes: dict[str, Dims]) -> onnx.ModelProto:
    """`model` at opset 21 with every `quantise_tokens` chain on the default zero point ended
    by one blocked `QuantizeLinear` (see the module docstring); `shapes`: the activations'
    shapes (`activation_shapes` of the graph before it was quantised)."""
    model = version_converter.convert_version(model, OPSET)
    nodes = list(model.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    groups: dict[tuple[object, ...], str] = {}
    replacement: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    position = {id(node): i for i, node in enumerate(nodes)}
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    for index, node in enumerate(nodes):
        if node.op_type != "QuantizeLinear" or list(node.input[1:]) != [
            f"{PREFIX}.one",
            f"{PREFIX}.zp",
        ]:
            continue
        divide = producer.get(node.input[0])
        if divide is None or divide.op_type != "Div" or readers[divide.output[0]] != 1:
            continue
        x, scale = divide.input
        dims = shapes.get(x)
        known = dims is not None and all(dims[:-1])
        key: tuple[object, ...] = ("rows", *dims[:-1]) if known and dims else ("own", x)
        new: list[onnx.NodeProto] = []
        zero_point = groups.get(key)
        if zero_point is None:
            zero_point = f"{ZERO_POINTS}.{len(groups)}"
            groups[key] = zero_point
            new += [
                helper.make_node(
                    "Shape", [scale], [f"{zero_point}.shape"], name=f"{zero_point}.Shape"
                ),
                helper.make_node(
                    "Expand",
                    [f"{PREFIX}.zp", f"{zero_point}.shape"],
                    [zero_point],
                    name=f"{zero_point}.Expand",
                ),
            ]
        width = dims[-1] if dims and isinstance(dims[-1], int) and dims[-1] > 0 else ANY_WIDTH
        new.append(
            helper.make_node(
                "QuantizeLinear",
                [x, scale, zero_point],
                list(node.output),
                name=node.name,
                axis=-1,
                block_size=width,
            )
        )
        replacement[index] = new
        dropped.add(position[id(divide)])
    for index in dropped:
        replacement[index] = []
    replace_nodes(model, nodes, replacement)
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    if len(kept) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return model
