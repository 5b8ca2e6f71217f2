"""Iteration-level batching for an encoder-decoder: rows join and leave a running decode.

Static batching runs a batch until its longest row ends, and a request that arrives meanwhile
waits for all of it. Here the decode is one long-lived batch of rows, stepped one token at a
time by its owner (the service's batcher thread):

- `join` encodes new requests (`OnnxSeq2Seq.encode`: on CPU a few at a time) straight into
  the batch's cross-attention store: one buffer per layer and kind, `max_rows` rows of the
  batch's longest source, whose leading rows are the live ones. The encoder mask pads to that
  width; the joining rows' self-attention cache is made by the next step's `beam_idx` (copies
  of another row's, behind zero columns of their `decoder_attention_mask`) and
  `decoder_position` counts their own tokens, so a row decodes exactly as it would alone (the
  decoder graph's two join inputs, `explain.artifacts.JOIN_INPUTS`). A decoder that writes
  its cache in place (`explain.kv_cache`) needs neither: a joining row starts at column 0 of
  its own slot's buffer row, at its own `decoder_position`. A join allocates no
  second copy of the cross keys and values and copies no cache on the host: before, the
  concatenations of both raised the process's RSS by up to 218 MB at a join (bart-base,
  int8, 16 rows), and writing in place lowered the running decode's peak from 795-812 to
  688-707 MB (README *Known limitations*).
- With IO binding (CUDA), the store's live rows are copied to the device once after each
  join or cut and fed from there; a plain feed would copy them at every step.
- `step` runs the decoder once for every row, applies each row's own rules (min length and
  forced BOS by its own token count, its own banned slots: `explain.decoding.process_logits`,
  what greedy and beam search use; its own token limit), and returns the rows that ended.
- Ended and dropped rows are answered at once and cut out lazily: when a quarter of the
  slots are ended rows, or at the next join. The cache is then reordered in the graph by
  `beam_idx` (no host copy), or its buffer rows move up in place (an in-place cache); the
  store's rows move up in place (`explain.cross_store`), the store narrows (a copy) when the
  longest source left is at most three quarters of its width, and cache columns no row can
  see any more are cut.

Greedy only: beam search (the second pass) keeps its own static path. Graphs exported before
the join inputs existed cannot join (`joinable` is False) and are batched statically.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from explain import artifacts
from explain.cross_store import CrossStore
from explain.decoding import GenerationIds, Logits, choose
from explain.explainer import Explainer, Generation, Prepared, pad_batch
from explain.kv_cache import COLUMN_STEP, InPlaceCache, in_place
from explain.onnx_backend import EncodedBatch, OnnxSeq2Seq
from explain.session import Value, to_host
from explain.steps import candidates_of, empty_cache_shape, logits_again

Array = npt.NDArray[Any]


def joinable(explainer: Explainer) -> bool:
    """Whether `explainer` can decode in a `RunningBatch` (ONNX graphs with the join inputs)."""
    backend = explainer.backend
    if not isinstance(backend, OnnxSeq2Seq):
        return False
    if in_place(backend.decoder):  # a row's cache is its own columns, at its own position
        return "decoder_position" in backend.decoder.inputs
    return all(name in backend.decoder.inputs for name in artifacts.JOIN_INPUTS)


def _pad_axis(array: Array, axis: int, width: int) -> Array:
    missing = width - array.shape[axis]
    if missing <= 0:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, missing)
    return np.pad(array, pad)


@dataclass
class _Row:
    key: Hashable
    limit: int
    banned: tuple[int, ...]
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Ended:
    """A row that left the running batch, with its candidates."""

    key: Hashable
    generation: Generation


class RunningBatch:
    """The rows decoding now. Not thread-safe: one thread joins, steps and drops."""

    def __init__(self, explainer: Explainer, *, max_rows: int) -> None:
        if not joinable(explainer):
            raise ValueError(
                "this model's decoder graph cannot take joining rows (publish the model again)"
            )
        backend = explainer.backend
        assert isinstance(backend, OnnxSeq2Seq)
        self.explainer = explainer
        self.backend: OnnxSeq2Seq = backend
        self.ids: GenerationIds = backend.ids
        self.min_new_tokens = explainer.decode.min_new_tokens
        self.max_rows = max_rows
        layers = backend.spec.decoder_layers
        self.past_names = [n for i in range(layers) for n in artifacts.past_names(i)]
        self.present_names = [n for i in range(layers) for n in artifacts.present_names(i)]
        self.cross_names = backend.cross_names
        # One slot per row of the arrays below; None: a row that ended and has not been cut
        # out yet (cutting copies the cross keys and values, so it waits until enough rows
        # ended, or a join copies them anyway).
        self.slots: list[_Row | None] = []
        self.steps = 0
        self.last_reruns = 0  # 1 when the last step ran again for its logits (`choose`)
        # With IO binding (CUDA), the store's live rows are copied to the device once after
        # each change (a join, a cut) and fed from there, instead of at every step.
        self.keep_cross_on_device = True
        self.store = CrossStore(backend, max_rows)
        # A decoder that writes its cache in place (`explain.kv_cache`) keeps it in one
        # buffer of `max_rows` rows per layer and kind; a row's cache is its slot's row.
        self.in_place = in_place(backend.decoder)
        self._reset()

    def _reset(self) -> None:
        self.slots = []
        self.past: dict[str, Value] = {}
        self.cache: InPlaceCache | None = None
        self.store.clear()
        self.encoder_mask = np.zeros((0, 0), dtype=np.int64)
        self.self_mask = np.zeros((0, 0), dtype=np.int64)
        self.last = np.zeros(0, dtype=np.int64)
        self.reorder: npt.NDArray[np.int64] | None = None  # slots kept since the last step

    @property
    def cross(self) -> dict[str, Array]:
        """The slots' cross keys and values: the store's leading rows (contiguous views)."""
        return self.store.view(len(self.slots))

    @property
    def cross_uploads(self) -> int:
        return self.store.uploads

    @property
    def rows(self) -> list[_Row]:
        return [row for row in self.slots if row is not None]

    def __len__(self) -> int:
        return sum(1 for row in self.slots if row is not None)

    def row_keys(self) -> list[Hashable]:
        return [row.key for row in self.rows]

    @property
    def free(self) -> int:
        return self.max_rows - len(self)

    # --- join ---------------------------------------------------------------------------

    def join(self, items: Sequence[tuple[Hashable, Prepared]]) -> float:
        """Encode `items` (greedy requests of this batch's explainer) and add their rows.
        Returns the seconds the encoder took. Raises if the encoder fails: the running rows
        are untouched then."""
        if not items:
            return 0.0
        if len(items) > self.free:
            raise ValueError(f"{len(items)} rows cannot join: {self.free} free of {self.max_rows}")
        for _, prepared in items:
            if prepared.num_beams != 1:
                raise ValueError("only greedy requests join a running batch")
        start = time.perf_counter()
        ids, mask = pad_batch(
            [p.student.input_ids for _, p in items], self.explainer.tokenizer.pad_id
        )
        vectors = np.stack([p.user_vector for _, p in items]).astype(np.float32)
        self._compact()
        self.store.changed()  # it gains rows
        n, joining = len(self.slots), len(items)
        width = self.store.widen(max(self.encoder_mask.shape[1], mask.shape[1]), n)
        self.encoder_mask = _pad_axis(self.encoder_mask, 1, width)
        self.backend.encode(EncodedBatch(ids, mask, vectors), into=self.store.rows_at(n, joining))
        encoded = time.perf_counter()
        self.encoder_mask = np.concatenate([self.encoder_mask, _pad_axis(mask, 1, width)])
        start_token = np.full(joining, self.ids.decoder_start_token_id, dtype=np.int64)
        if self.in_place:  # the joining rows start at column 0 of their own slots
            if self.cache is None:
                layers = self.backend.spec.decoder_layers
                decoder = self.backend.decoder
                self.cache = InPlaceCache(decoder, layers, self.max_rows, COLUMN_STEP)
            self.last = np.concatenate([self.last, start_token])
        elif not n:
            shape = empty_cache_shape(self.backend.decoder, self.past_names[0], joining)
            dtype = self.backend.decoder.inputs[self.past_names[0]].dtype
            self.past = {name: np.zeros(shape, dtype=dtype) for name in self.past_names}
            self.self_mask = np.zeros((joining, 0), dtype=np.int64)
            self.last, self.reorder = start_token, None
        else:
            # The joining rows' cache is made in the graph by the next step's `beam_idx`, as
            # copies of row 0's: their `decoder_attention_mask` is zero over those columns, so
            # they never see them (a masked column's weight is exactly 0). No host copy.
            kept = self.reorder if self.reorder is not None else np.arange(n, dtype=np.int64)
            self.reorder = np.concatenate([kept, np.zeros(joining, dtype=np.int64)])
            columns = self.self_mask.shape[1]
            self.self_mask = np.concatenate(
                [self.self_mask, np.zeros((joining, columns), dtype=np.int64)]
            )
            self.last = np.concatenate([self.last, start_token])
        for key, prepared in items:
            self.slots.append(_Row(key, prepared.max_new_tokens, prepared.banned))
        return encoded - start

    def _settle_reorder(self) -> None:
        """Apply a pending row removal to the cache on the host (before cutting columns)."""
        if self.reorder is None:
            return
        for name in self.past_names:
            self.past[name] = to_host(self.past[name])[self.reorder]
        self.reorder = None

    # --- step -----------------------------------------------------------------------------

    def step(self) -> list[Ended]:
        """One token for every row; the rows that ended leave and are returned."""
        self.last_reruns = 0
        if not len(self):
            return []
        # Slots of rows that ended are still computed until they are cut out: their tokens are
        # ignored, and their position is held at 0 so it never runs past the learnt ones.
        counts = np.array([len(r.tokens) if r else 0 for r in self.slots], dtype=np.int64)
        rows = len(self.slots)
        feeds: dict[str, Value] = {
            "input_ids": self.last[:, None],
            "encoder_attention_mask": self.encoder_mask,
            "decoder_position": counts,
            **self.store.feeds(rows, self.keep_cross_on_device),
        }
        decoder = self.backend.decoder
        has_top = artifacts.TOP_IDS in decoder.outputs
        wanted = [artifacts.TOP_IDS, artifacts.TOP_SCORES] if has_top else [artifacts.LOGITS]
        out: dict[str, Value]
        if self.cache is not None:
            self.cache.ensure_columns(int(counts.max()) + 1)
            out = dict(decoder.run_in_place(feeds, self.cache.bindings(rows), outputs=wanted))
        else:
            self.self_mask = np.concatenate([self.self_mask, np.ones((rows, 1), np.int64)], 1)
            reorder = self.reorder if self.reorder is not None else np.arange(rows, dtype=np.int64)
            feeds.update(beam_idx=reorder, decoder_attention_mask=self.self_mask, **self.past)
            present = self.present_names
            out = decoder.run(feeds, keep=present, outputs=[*wanted, *present])
            self.reorder = None
            pairs = zip(self.past_names, self.present_names, strict=True)
            self.past = {p: out[q] for p, q in pairs}
        top = candidates_of(decoder, out, self.backend.spec.vocab_size) if has_top else None

        def full() -> Logits:  # this step's logits: as run, or the same step again
            if not has_top:
                return to_host(out[artifacts.LOGITS])
            self.last_reruns = 1
            return logits_again(decoder, feeds, self.cache, rows)

        banned = [row.banned if row else () for row in self.slots]
        chosen = choose(top, full, counts, self.ids, banned, self.min_new_tokens)
        self.steps += 1
        ended: list[Ended] = []
        for index, row in enumerate(self.slots):
            if row is None:
                continue
            token = int(chosen[index])
            row.tokens.append(token)
            if token == self.ids.eos_token_id or len(row.tokens) >= row.limit:
                ended.append(Ended(row.key, Generation([row.tokens])))
                self.slots[index] = None
        self.last = chosen
        if ended:
            self._maybe_compact()
        return ended

    # --- leave ----------------------------------------------------------------------------

    def drop(self, keys: Sequence[Hashable]) -> int:
        """Remove rows nobody waits for any more (a passed deadline): their tokens are not
        wanted any further. Returns how many were removed."""
        gone = set(keys)
        removed = 0
        for index, row in enumerate(self.slots):
            if row is not None and row.key in gone:
                self.slots[index] = None
                removed += 1
        if removed:
            self._maybe_compact()
        return removed

    def fail_all(self) -> list[Hashable]:
        """Empty the batch (its engine failed); returns the keys that were running."""
        keys = self.row_keys()
        self._reset()
        return keys

    def _maybe_compact(self) -> None:
        """Cut ended rows out once they are a quarter of the slots (or all of them): until
        then computing them costs less than copying every row's cross keys and values."""
        dead = sum(1 for row in self.slots if row is None)
        if dead and (dead == len(self.slots) or 4 * dead >= len(self.slots)):
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, row in enumerate(self.slots) if row is not None]
        if len(keep) == len(self.slots):
            return
        if not keep:
            self._reset()
            return
        index = np.asarray(keep, dtype=np.int64)
        self.store.changed()  # rows move up and the store may narrow
        self.slots = [self.slots[i] for i in keep]
        self.last = self.last[index]
        if self.cache is not None:  # rows move up in place, as the store's below
            self.cache.move_rows(keep)
        else:  # reordered inside the graph at the next step (its beam_idx input)
            self.reorder = index if self.reorder is None else self.reorder[index]
        mask = self.encoder_mask[index]
        self.store.move_up(keep)
        # Narrow the store (a copy) once the longest source left saves a quarter of it.
        longest = int(np.flatnonzero(mask.any(axis=0)).max()) + 1  # right-padded sources
        width = mask.shape[1]
        if 4 * longest <= 3 * width:
            width = longest
            self.store.narrow(width, len(keep))
        self.encoder_mask = np.ascontiguousarray(mask[:, :width])
        if self.cache is not None:
            return
        self.self_mask = self.self_mask[index]
        seen = np.flatnonzero(self.self_mask.any(axis=0))
        first = int(seen[0]) if seen.size else self.self_mask.shape[1]
        if first > 0:  # columns written before every remaining row joined
            self._settle_reorder()
            self.self_mask = np.ascontiguousarray(self.self_mask[:, first:])
            for name in self.past_names:
                self.past[name] = np.ascontiguousarray(to_host(self.past[name])[:, :, first:])
