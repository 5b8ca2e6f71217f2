"""Constant target shapes for the exported graphs' reshapes.

The TorchScript exporter writes every `view`/`reshape` of a tensor whose batch and length are
dynamic as a small graph that reads the shape at run time:

    Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), Unsqueeze(Gather(Shape(x), 1)), [12], ...))

ONNX Runtime folds the static entries, but the dynamic ones stay: at bart-base about a hundred
`Shape`, `Gather`, `Unsqueeze` and `Concat` nodes ran at every decoder step. `Reshape` can say
the same with a constant: 0 copies the input's dimension at that position, one -1 is inferred
from the element count. `constant_reshapes` rewrites a target shape when every entry is a
constant, or the input's own dimension at that position (read from the input itself, or from
the tensor a `Transpose` made it from, through the permutation), with at most one entry that
is neither (it becomes -1); it then drops the nodes nothing reads any more. The reshapes
compute the same tensors; only the arithmetic on shapes is gone.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

_UNKNOWN = None


def constant_reshapes(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every `Reshape` whose target shape can be a constant (see the module
    docstring). Returns how many were rewritten."""
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {out: node for node in graph.node for out in node.output}
    count = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] in values:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue  # there 0 is a literal size, not "copy the input's dimension"
        shape = _target(node.input[0], producer.get(node.input[1]), producer, values)
        if shape is None:
            continue
        name = f"{node.name or node.output[0]}.shape"
        graph.initializer.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), name))
        node.input[1] = name
        count += 1
    if count:
        drop_dead_nodes(model)
    return count


def _target(
    data: str,
    concat: onnx.NodeProto | None,
    producer: dict[str, onnx.NodeProto],
    values: dict[str, np.ndarray],
) -> list[int] | None:
    """The constant shape for `Reshape(data, concat)`, or None when it cannot be one."""
    if concat is None or concat.op_type != "Concat":
        return None
    transpose = producer.get(data)
    perm = None
    if transpose is not None and transpose.op_type == "Transpose":
        # without `perm` a transpose reverses the axes, which needs the rank: not followed
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
    entries: list[int | None] = []
    for part in concat.input:
        if part in values:
            constant = values[part].reshape(-1).tolist()
            if 0 in constant:  # a literal 0 already copies a dimension: leave it as it is
                return None
            entries += [int(v) for v in constant]
            continue
        source, index = _dimension(part, producer, values)
        position = len(entries)
        if source == data and index == position:
            entries.append(0)
        elif perm and transpose is not None and source == transpose.input[0]:
            entries.append(0 if position < len(perm) and perm[position] == index else _UNKNOWN)
        else:
            entries.append(_UNKNOWN)
    inferred = sum(1 for e in entries if e is _UNKNOWN or e == -1)
    if inferred > 1:
        return None
    return [-1 if e is _UNKNOWN else e for e in entries]


def _dimension(
    name: str, producer: dict[str, onnx.NodeProto], values: dict[str, np.ndarray]
) -> tuple[str | None, int | None]:
    """(tensor, axis) when `name` is `Unsqueeze(Gather(Shape(tensor), axis), 0)`, a one-element
    vector holding that dimension; else (None, None)."""
    unsqueeze = producer.get(name)
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or len(unsqueeze.input) != 2:
        return None, None
    if values.get(unsqueeze.input[1], np.array([1])).reshape(-1).tolist() != [0]:
        return None, None
    gather = producer.get(unsqueeze.input[0])
    if gather is None or gather.op_type != "Gather" or gather.input[1] not in values:
        return None, None
    index = values[gather.input[1]]
    shape = producer.get(gather.input[0])
    if index.ndim != 0 or shape is None or shape.op_type != "Shape" or shape.attribute:
        return None, None
    return shape.input[0], int(index)


def node_readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Each value's reading nodes, in graph order (none: an empty list)."""
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            readers[name].append(node)
    return readers


def drop_dead_nodes(model: onnx.ModelProto) -> int:
    """Remove, in place, the nodes none of whose outputs is read by a node or is a graph
    output, until none is left, then the initializers nothing reads. Returns how many nodes."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    removed = 0
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        live = [n for n in graph.node if any(out in read for out in n.output)]
        if len(live) == len(graph.node):
            break
        removed += len(graph.node) - len(live)
        kept = [onnx.NodeProto() for _ in live]
        for target, source in zip(kept, live, strict=True):
            target.CopyFrom(source)
        del graph.node[:]
        graph.node.extend(kept)
    read = {name for node in graph.node for name in node.input} | outputs
    initializers = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return removed
