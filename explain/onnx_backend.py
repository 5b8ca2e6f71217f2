"""The ONNX Runtime backend of `Explainer.generate`: the encoder once, the decoder per token.

The encoder returns the cross-attention keys and values of every decoder layer, so they are
projected once per request, not once per step. On CPU the encoder takes a few requests per
call (`ENCODE_TOKENS` padded tokens at most, requests of similar length together) and
writes into the batch's preallocated cross keys and values: little padding is computed, and
the encoder's activations are a few requests' (a batch of 32 bart-base requests encoded in
one call held about 200 MB of them). A graph whose activation scales depend on the whole
call (the int8 `dynamic-encoder` recipe; `explain.artifacts.ACTIVATION_SCALES`) is run one
request per call, so every request gets the same answer whoever shares its batch; the other
graphs give a row the same bits alone, padded, or in a batch (tested). A GPU wants the whole
batch in one call, and gets it. The decoder step takes the self-attention cache and reorders
it in-graph by `beam_idx`, or, where the graph writes it in place (`explain.kv_cache`),
updates host buffers that beams reorder on the host. Which of those stay on the device
between steps, and which element types the graphs want, is the session's business
(`explain.session.OnnxSession`); this module only names the tensors. With decode lanes
(`explain.lanes`, CPU only) a batch runs as a few parts side by side, each encoded and decoded
on a thread of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from explain import artifacts
from explain.decoding import (
    Decoded,
    DecodeRequest,
    GenerationIds,
    IntArray,
    beam,
    greedy,
)
from explain.lanes import Lanes
from explain.session import OnnxSession, Value, to_host
from explain.steps import CachedSteps

ENCODER_INPUTS = ("input_ids", "attention_mask", "user_embeds")
# Padded tokens per encoder call on CPU: four 120-token requests. At the bart-base shape (int8
# `per-token`, 2 threads, three runs of three batches of 32 such requests, in separate
# processes): encoding took 0.77-1.11 s this way against 0.93-1.37 s one request per call,
# for a peak RSS of 571-576 MB against 544-549. Eight per call was barely faster and peaked
# at 641-645 MB; a whole batch in one call is slower (its activations leave the caches).
# With lanes each lane takes ENCODE_TOKENS / (2 x lanes) per call (2 lanes of 1 thread: 128 tokens
# peaked at 535 MB, 256 at 585, 512 at 613, all encoding a batch of 32 in 0.66-0.67 s).
ENCODE_TOKENS = 512


@dataclass(frozen=True)
class EncodedBatch:
    """A padded batch: ids and mask [rows, src] int64, user vectors [rows, d_model] float32."""

    input_ids: IntArray
    attention_mask: IntArray
    user_vectors: npt.NDArray[np.floating[Any]]

    @property
    def rows(self) -> int:
        return int(self.input_ids.shape[0])

    def take(self, rows: IntArray) -> EncodedBatch:
        return EncodedBatch(
            self.input_ids[rows], self.attention_mask[rows], self.user_vectors[rows]
        )

    def repeated(self, times: int) -> EncodedBatch:
        if times == 1:
            return self
        return EncodedBatch(
            np.repeat(self.input_ids, times, axis=0),
            np.repeat(self.attention_mask, times, axis=0),
            np.repeat(self.user_vectors, times, axis=0),
        )


@dataclass(frozen=True)
class Generated:
    decoded: Decoded
    encode_s: float
    decode_s: float
    reruns: int = 0  # greedy steps run again for their logits (`explain.decoding.choose`)


def _unpadded_length(mask: IntArray) -> int:
    """A right-padded row's length; the whole row when its padding is anywhere else."""
    length = int(mask.sum())
    return length if length and bool(mask[:length].all()) else int(mask.shape[0])


def _fill_rows(
    target: npt.NDArray[Any], value: npt.NDArray[Any], rows: Sequence[int], lengths: Sequence[int]
) -> None:
    """`value`'s k-th row (its first `lengths[row]` source columns, axis 2) into row `rows[k]`
    of `target`, the rest of that row's columns zeroed."""
    for k, row in enumerate(rows):
        length = lengths[row]
        target[row, :, :length] = value[k, :, :length]
        target[row, :, length:] = 0


def encoder_calls(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Rows grouped into encoder calls: shortest first, a group growing while its padded
    size (rows x its longest row) stays within `budget` tokens; every row in one group.
    `budget` 0 puts each row in a call of its own."""
    order = sorted(range(len(lengths)), key=lambda row: lengths[row])
    groups: list[list[int]] = []
    for row in order:
        if groups and (len(groups[-1]) + 1) * lengths[row] <= budget:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


class OnnxSeq2Seq:
    """Implements the `GenerationBackend` protocol on an encoder and a one-step decoder graph."""

    def __init__(
        self,
        encoder: OnnxSession,
        decoder: OnnxSession,
        spec: artifacts.OnnxSpec,
        ids: GenerationIds,
        *,
        scales_per_call: bool = False,
        lanes: int = 1,
    ) -> None:
        """`scales_per_call`: the encoder's activation scales depend on the whole call (see
        `encode_tokens`). `lanes`: parts of a batch run side by side (`explain.lanes`; the
        sessions should have that many times fewer intra-op threads); 1 on a GPU."""
        encoder.require(ENCODER_INPUTS)
        self.encoder, self.decoder, self.spec, self.ids = encoder, decoder, spec, ids
        # The cross keys the decoder takes [rows, heads, head_dim, src] (the encoder returns
        # them [rows, heads, src, head_dim]; `encode` stores them turned).
        layout = decoder.metadata.get(artifacts.CROSS_KEY_LAYOUT)
        layers = range(spec.decoder_layers)
        self.transposed = (
            {artifacts.cross_names(i)[0] for i in layers}
            if layout == artifacts.KEYS_TRANSPOSED
            else set()
        )
        # The cross keys and values, and the int8 values' (and keys') scales where the graphs
        # have them (`per-token-split-v8`, `svd-head-k8`): every one [rows, heads, src,
        # head_dim or 1].
        self.cross_names = [
            n
            for i in range(spec.decoder_layers)
            for n in artifacts.cross_inputs(i)
            if n in encoder.outputs
        ]
        self.lanes = Lanes(lanes if encoder.device == "cpu" else 1)
        # The most padded tokens one encoder call takes: 0 is one request per call (what a
        # graph with per-call scales needs, on any device), None the whole batch (a GPU).
        count = self.lanes.count
        self.encode_tokens: int | None = (
            ENCODE_TOKENS // (2 * count) if count > 1 else ENCODE_TOKENS
        )
        if encoder.device != "cpu":
            self.encode_tokens = None
        if scales_per_call:
            self.encode_tokens = 0

    @property
    def device(self) -> str:
        return self.decoder.device

    @property
    def max_new_tokens_limit(self) -> int:
        """The decoder has learnt this many positions: BOS is forced, so one less is left."""
        return self.spec.max_positions - 1

    def cross_shape(self, name: str, rows: int, width: int) -> tuple[int, int, int, int]:
        """The shape of cross input `name` for `rows` rows of `width` source tokens."""
        scales = artifacts.cross_scale_names(self.spec.decoder_layers)
        if name in self.transposed:
            return rows, self.spec.num_heads, self.spec.head_dim, width
        return rows, self.spec.num_heads, width, 1 if name in scales else self.spec.head_dim

    def by_source(self, name: str, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A store of cross input `name` (the decoder's layout) seen as [rows, heads, src,
        ...], the encoder's: keys the decoder takes transposed (`artifacts.KEYS_TRANSPOSED`)
        are viewed with their last two axes swapped (a view: writing to it writes the store)."""
        return array.swapaxes(2, 3) if name in self.transposed else array

    def cross_type(self, name: str) -> np.dtype[Any]:
        return self.encoder.outputs[name].dtype

    def encode(
        self, batch: EncodedBatch, into: Mapping[str, npt.NDArray[Any]] | None = None
    ) -> dict[str, Value]:
        """The cross keys and values of every row, [rows, heads, src, head_dim] each.

        `into`: host arrays [rows, heads, >= src, head_dim] to write them into (and return),
        columns past a row's length zeroed; a running decode's own buffers, so a join
        allocates no second copy of them."""
        if self.encode_tokens is None:
            feeds = {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "user_embeds": batch.user_vectors,
            }
            out = self.encoder.run(feeds, keep=self.cross_names)
            if into is None:
                for name in self.transposed:
                    out[name] = np.ascontiguousarray(to_host(out[name]).swapaxes(2, 3))
                return out
            lengths = [batch.input_ids.shape[1]] * batch.rows
            for name in self.cross_names:
                target = self.by_source(name, into[name])
                _fill_rows(target, to_host(out[name]), range(batch.rows), lengths)
            return dict(into)
        rows, width = batch.input_ids.shape
        # Every row is written below, with zeros past its length (masked out by the encoder
        # mask anyway, but never left to whatever the memory held).
        cross = dict(into) if into is not None else {}
        for name in self.cross_names:
            if name not in cross:
                cross[name] = np.empty(self.cross_shape(name, rows, width), self.cross_type(name))
        lengths = [_unpadded_length(batch.attention_mask[row]) for row in range(rows)]
        for group in encoder_calls(lengths, self.encode_tokens):
            longest = max(lengths[row] for row in group)
            picked = np.asarray(group, dtype=np.int64)
            out = self.encoder.run(
                {
                    "input_ids": batch.input_ids[picked, :longest],
                    "attention_mask": batch.attention_mask[picked, :longest],
                    "user_embeds": batch.user_vectors[picked],
                }
            )
            for name in self.cross_names:
                target = self.by_source(name, cross[name])
                _fill_rows(target, to_host(out[name]), group, lengths)
        return cross

    def generate(self, batch: EncodedBatch, request: DecodeRequest) -> Generated:
        """Candidates for every row; with lanes, the rows in as many parts as there are lanes,
        run at once (a part's failure fails the batch, as one call's would)."""
        if self.lanes.count == 1 or batch.rows < 2:
            return self._generate(batch, request)
        start = time.perf_counter()
        parts = np.array_split(np.arange(batch.rows), min(self.lanes.count, batch.rows))
        outcomes = self.lanes.run(
            [partial(self._generate, batch.take(rows), _rows_of(request, rows)) for rows in parts]
        )
        done: list[Generated] = []
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            done.append(outcome)
        decoded = Decoded(
            [row for part in done for row in part.decoded.candidates],
            max(part.decoded.steps for part in done),
        )
        encode_s = max(part.encode_s for part in done)
        reruns = sum(part.reruns for part in done)
        return Generated(decoded, encode_s, time.perf_counter() - start - encode_s, reruns)

    def _generate(self, batch: EncodedBatch, request: DecodeRequest) -> Generated:
        start = time.perf_counter()
        beams = request.num_beams
        if self.encode_tokens is not None:  # each request once, then its rows repeated per beam
            cross = {
                name: value if beams == 1 else np.repeat(to_host(value), beams, axis=0)
                for name, value in self.encode(batch).items()
            }
            mask = batch.repeated(beams).attention_mask
        else:
            rows = batch.repeated(beams)
            cross, mask = self.encode(rows), rows.attention_mask
        encoded = time.perf_counter()
        stepper = CachedSteps(
            self.decoder,
            mask,
            cross,
            self.spec.decoder_layers,
            self.spec.vocab_size,
            columns=max(request.max_new_tokens, default=0),
        )
        run = beam if request.num_beams > 1 else greedy
        decoded = run(stepper, self.ids, request)
        return Generated(decoded, encoded - start, time.perf_counter() - encoded, stepper.reruns)


def _rows_of(request: DecodeRequest, rows: IntArray) -> DecodeRequest:
    return dataclasses.replace(
        request,
        max_new_tokens=[request.max_new_tokens[i] for i in rows],
        banned=[request.banned[i] for i in rows],
    )
