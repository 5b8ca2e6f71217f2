"""The self-attention cache of a decoder that writes it in place (`artifacts.IN_PLACE`).

Such a graph (`training.int8_fused`) takes each layer's `past_key_{i}` / `past_value_{i}`
and returns `present_*` of the same shape, [rows, heads, columns, head_dim]: the runtime
binds both to one host buffer, and the graph writes each row's new key and value at that
row's `decoder_position` column and reads its columns before it. So a step copies no cache,
and every row has its own length: rows that join a running decode start at column 0 of
their slot, whatever the others hold. What the graph does not do is done here, on the host:
beam search's reordering of rows, a running decode's rows moving up when others leave, and
more columns when a row outgrows the buffer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from explain import artifacts
from explain.session import OnnxSession

# Columns are added in steps of at least this many (then doubling): few copies per decode.
COLUMN_STEP = 32


def in_place(decoder: OnnxSession) -> bool:
    """Whether `decoder` writes its self-attention cache in place (graph metadata)."""
    return decoder.metadata.get(artifacts.SELF_ATTENTION_CACHE) == artifacts.IN_PLACE


class InPlaceCache:
    """One buffer per layer and kind, [rows, heads, columns, head_dim], zeros to start."""

    def __init__(self, decoder: OnnxSession, layers: int, rows: int, columns: int) -> None:
        self.past_names = [n for i in range(layers) for n in artifacts.past_names(i)]
        self.present_names = [n for i in range(layers) for n in artifacts.present_names(i)]
        spec = decoder.inputs[self.past_names[0]]
        heads, head_dim = spec.shape[1], spec.shape[3]
        if not isinstance(heads, int) or not isinstance(head_dim, int):
            raise ValueError(f"{decoder.path.name}: the KV cache needs static heads/head_dim")
        self.dtype = spec.dtype
        shape = (rows, heads, max(columns, 1), head_dim)
        self.buffers: dict[str, npt.NDArray[Any]] = {
            name: np.zeros(shape, dtype=self.dtype) for name in self.past_names
        }

    @property
    def rows(self) -> int:
        return int(next(iter(self.buffers.values())).shape[0])

    @property
    def columns(self) -> int:
        return int(next(iter(self.buffers.values())).shape[2])

    def ensure_columns(self, needed: int) -> None:
        """At least `needed` columns: a wider buffer (doubling, `COLUMN_STEP` at least) with
        the old columns copied, where the buffer is narrower."""
        have = self.columns
        if needed <= have:
            return
        wider = max(needed, 2 * have, COLUMN_STEP)
        for name, old in self.buffers.items():
            new = np.zeros((old.shape[0], old.shape[1], wider, old.shape[3]), dtype=self.dtype)
            new[:, :, :have] = old
            self.buffers[name] = new  # the old one goes now, not after every name

    def reorder(self, index: npt.NDArray[np.int64], columns: int) -> None:
        """Row r's first `columns` columns become row `index[r]`'s (beam search)."""
        for buffer in self.buffers.values():
            buffer[:, :, :columns] = buffer[index, :, :columns]

    def move_rows(self, keep: Sequence[int]) -> None:
        """Row `keep[k]` moves to row k, in place (`keep` ascending: rows only move up)."""
        move_up(self.buffers.values(), keep)

    def bindings(self, rows: int) -> dict[str, tuple[str, ort.OrtValue]]:
        """Each past name -> (its present name, the buffer's first `rows` rows): what
        `OnnxSession.run_in_place` binds to both."""
        return {
            past: (present, ort.OrtValue.ortvalue_from_numpy(self.buffers[past][:rows]))
            for past, present in zip(self.past_names, self.present_names, strict=True)
        }


def move_up(arrays: Iterable[npt.NDArray[Any]], keep: Sequence[int]) -> None:
    """In each array, row `keep[k]` to row k, in place: `keep` ascending, so every copy reads
    a row no earlier copy wrote."""
    for array in arrays:
        for to, source in enumerate(keep):
            if to != source:
                array[to] = array[source]
