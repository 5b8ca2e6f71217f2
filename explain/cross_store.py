"""The cross-attention keys and values of a running decode (`explain.continuous`).

One buffer per layer and kind (and scale), `max_rows` rows of the batch's longest source,
allocated once per busy spell: the live rows are the leading ones, a join's encoder writes
its rows in place after them (`rows_at`), and cutting rows out moves rows up in place. Each
buffer is in the decoder's layout (`OnnxSeq2Seq.cross_shape`: keys a decoder takes
transposed are [rows, heads, head_dim, src]); `OnnxSeq2Seq.by_source` views every one as
[rows, heads, src, ...] for the source-column work here. With IO binding (CUDA), the live
rows are copied to the device once after each change and fed from there (a 32-row batch of
bart-base carries about 28 MB of cross keys and values in fp16, which a plain feed would
copy at every step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from explain.kv_cache import move_up
from explain.onnx_backend import OnnxSeq2Seq
from explain.session import Value

Array = npt.NDArray[Any]


class CrossStore:
    def __init__(self, backend: OnnxSeq2Seq, max_rows: int) -> None:
        self.backend = backend
        self.max_rows = max_rows
        self.arrays: dict[str, Array] = {}
        self.uploads = 0  # device copies made (IO binding)
        self._device: dict[str, Value] | None = None  # the live rows on the device, if current

    def clear(self) -> None:
        self.arrays = {}
        self._device = None

    def changed(self) -> None:
        """The live rows changed (a join, a cut): the device copy is stale."""
        self._device = None

    def view(self, rows: int) -> dict[str, Array]:
        """The first `rows` rows of every buffer (contiguous views)."""
        return {name: array[:rows] for name, array in self.arrays.items()}

    def feeds(self, rows: int, on_device: bool) -> dict[str, Value]:
        """`view(rows)` as a step feeds it: on the host without IO binding (or with
        `on_device` False); with it, the device copy made after the last change."""
        decoder = self.backend.decoder
        if not (on_device and decoder.io_binding):
            return self.view(rows)
        if self._device is None:
            self._device = {k: decoder.to_device(v) for k, v in self.view(rows).items()}
            self.uploads += 1
        return self._device

    def rows_at(self, start: int, count: int) -> dict[str, Array]:
        """Rows `start` to `start + count` of every buffer: where a join's encoder writes."""
        return {name: array[start : start + count] for name, array in self.arrays.items()}

    def widen(self, width: int, rows: int) -> int:
        """At least `width` source columns (allocating the buffers if there are none; the
        first `rows` rows copied and zero-padded if they grow). Returns the width."""
        by_source = self.backend.by_source
        if self.arrays:
            name = next(iter(self.arrays))
            have = int(by_source(name, self.arrays[name]).shape[2])
            if have >= width:
                return have
        for name in self.backend.cross_names:
            shape = self.backend.cross_shape(name, self.max_rows, width)
            array = np.empty(shape, dtype=self.backend.cross_type(name))
            if name in self.arrays and rows:
                old, new = by_source(name, self.arrays[name]), by_source(name, array)
                new[:rows, :, : old.shape[2]] = old[:rows]
                new[:rows, :, old.shape[2] :] = 0
            self.arrays[name] = array  # the old one goes now, not after every name
        return width

    def move_up(self, keep: Sequence[int]) -> None:
        """Row `keep[k]` to row k in every buffer, in place (`keep` ascending)."""
        move_up(self.arrays.values(), keep)

    def narrow(self, width: int, rows: int) -> None:
        """Buffers `width` source columns wide, their first `rows` rows kept (a copy)."""
        by_source = self.backend.by_source
        for name, array in self.arrays.items():
            shape = self.backend.cross_shape(name, array.shape[0], width)
            narrow = np.empty(shape, dtype=array.dtype)
            by_source(name, narrow)[:rows] = by_source(name, array)[:rows, :, :width]
            self.arrays[name] = narrow
