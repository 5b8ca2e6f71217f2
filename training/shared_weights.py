"""One copy of the tied token embedding for the encoder and decoder graphs.

BART ties its token embedding: the encoder and the decoder look up the same table, but the
exporter writes it into each graph (154 MB each at bart-base in fp32). `share_token_embedding`
finds the table in both graphs of a pair (a `Gather` whose data is a constant of
`[vocab, d_model]`), checks that the two are byte for byte the same, and moves it out of both
into one `.npy` file referenced as ONNX external data under one name
(`explain.artifacts.SHARED_EMBEDDING`). The values are untouched, so a graph computes exactly
what it did. The `.npy` header is skipped by the external data offset, which lets the loader
memory-map the same file and hand one array to both sessions (`explain.session`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from explain import artifacts

logger = logging.getLogger(__name__)


def _table(model: onnx.ModelProto, vocab_size: int) -> onnx.TensorProto | None:
    """The token embedding table: the constant data input of a Gather, [vocab, d_model]."""
    constants: dict[str, onnx.TensorProto] = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        table = constants.get(node.input[0]) if node.op_type == "Gather" else None
        if table is not None and len(table.dims) == 2 and table.dims[0] == vocab_size:
            return table
    return None


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def share_token_embedding(onnx_dir: Path, variant: str) -> bool:
    """Rewrite `variant`'s encoder and decoder in `onnx_dir` to share one embedding file.

    Returns False, leaving the graphs as they are (and no table file), when either graph has
    no such table or the two differ (an untied model). Graphs already shared are shared again."""
    spec = artifacts.OnnxSpec.load(onnx_dir)
    paths = [onnx_dir / name for name in artifacts.variant_files(variant)]
    data_file = artifacts.shared_embedding_file(variant)
    models = [onnx.load(str(path)) for path in paths]  # reads a shared table back in, if any
    (onnx_dir / data_file).unlink(missing_ok=True)  # a previous build's, if any
    found = [_table(model, spec.vocab_size) for model in models]
    tables = [t for t in found if t is not None]
    if len(tables) != len(found):
        logger.info("%s graphs: no token embedding table to share", variant)
        return False
    arrays = [numpy_helper.to_array(table) for table in tables]
    if arrays[0].dtype != arrays[1].dtype or not np.array_equal(arrays[0], arrays[1]):
        logger.info("%s graphs: the encoder and decoder tables differ; not shared", variant)
        return False
    np.save(onnx_dir / data_file, np.ascontiguousarray(arrays[0]))
    with open(onnx_dir / data_file, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    for model, table, path in zip(models, tables, paths, strict=True):
        _rename(model, table.name, artifacts.SHARED_EMBEDDING)
        table.name = artifacts.SHARED_EMBEDDING
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            table.ClearField(field)
        del table.external_data[:]
        table.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (
            ("location", data_file),
            ("offset", str(offset)),
            ("length", str(arrays[0].nbytes)),
        ):
            entry = table.external_data.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(path))
    logger.info(
        "%s graphs share one token embedding table (%s, %.1f MB)",
        variant,
        data_file,
        arrays[0].nbytes / 1e6,
    )
    return True
