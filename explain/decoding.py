"""Greedy and beam search over a one-step decoder: the decode loop, backend-free.

The semantics follow transformers' `generate` (decoder start token, forced BOS, EOS, pad
after EOS, `max_new_tokens` counting every generated token; for beams the vectorised beam
search with its length penalty and early-stop heuristic, ported to numpy from
`transformers/generation/utils.py` `_beam_search` of transformers 5.x), so the parity check
can demand identical tokens. Per-row `banned` token lists (the slots a request cannot fill)
are applied like a logits processor, after min-length and forced-BOS, in transformers' order.

The loop only sees a `Stepper`: something that takes this step's tokens and the beam
reorder and returns logits. `explain.onnx_backend` implements it over ONNX Runtime; the
logits may be float16 or float32, and the loop never needs to know. Greedy steps ask the
stepper for the graph's best candidates per row instead (`Candidates`), and pick among them
exactly as the argmax over the processed logits would (`choose`); beam search reads the
logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
Logits = npt.NDArray[Any]
# A banned token's score: the lowest finite float32, as transformers' processors use
# (`torch.finfo(dtype).min`), so a banned token can still be ranked below -inf-free scores.
BANNED = float(np.finfo(np.float32).min)
# Scores of beams that must never win (padding beams at step 0, finished hypotheses' slots).
NEVER = -1e9


@dataclass(frozen=True)
class GenerationIds:
    """The token ids BART's decoding convention needs (they come from the manifest)."""

    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int
    forced_bos_token_id: int | None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> GenerationIds:
        forced = raw.get("forced_bos_token_id")
        return cls(
            int(raw["decoder_start_token_id"]),
            int(raw["eos_token_id"]),
            int(raw["pad_token_id"]),
            None if forced is None else int(forced),
        )


@dataclass(frozen=True)
class DecodeRequest:
    """How to decode one batch. Every list has one entry per row."""

    max_new_tokens: Sequence[int]
    banned: Sequence[Sequence[int]]
    min_new_tokens: int = 0
    num_beams: int = 1
    num_return: int = 1  # candidates per row (beam search only; greedy gives one)


@dataclass(frozen=True)
class Decoded:
    """Per row, its candidates best first: every generated token, forced BOS and EOS included."""

    candidates: list[list[list[int]]]
    steps: int


@dataclass(frozen=True)
class Candidates:
    """A step's best next tokens per row, picked in the graph: `ids` and `scores` [rows, k],
    best first (any order among equal scores), out of a vocabulary of `vocab` tokens."""

    ids: IntArray
    scores: Logits
    vocab: int


class Stepper(Protocol):
    def step(self, tokens: IntArray, beam_idx: IntArray) -> Logits:
        """Logits [rows, vocab] for the next token, after reordering the cache by `beam_idx`."""
        ...

    def step_top(self, tokens: IntArray, beam_idx: IntArray) -> Candidates | None:
        """As `step`, but only the best candidates per row; None, without running the step,
        where the graph does not pick them."""
        ...

    def last_logits(self) -> Logits:
        """The full logits of the step `step_top` ran last (computed again)."""
        ...


def process_logits(
    scores: Logits,
    counts: IntArray,
    ids: GenerationIds,
    banned: Sequence[Sequence[int]],
    per_row: int,
    min_new_tokens: int,
) -> None:
    """Min length, forced BOS, then the per-row bans: transformers' processor order. `counts`
    holds, per row of `scores`, the tokens that row has generated (rows that joined a running
    decode at different steps have different counts); `banned` has one entry per request,
    whose rows are `per_row` consecutive rows of `scores` (its beams)."""
    scores[counts < min_new_tokens, ids.eos_token_id] = -np.inf
    if ids.forced_bos_token_id is not None:
        first = counts == 0
        if first.any():
            scores[first] = -np.inf
            scores[first, ids.forced_bos_token_id] = 0.0
    for row, tokens in enumerate(banned):
        if tokens:
            scores[row * per_row : (row + 1) * per_row, list(tokens)] = BANNED


def choose(
    top: Candidates | None,
    full: Callable[[], Logits],
    counts: IntArray,
    ids: GenerationIds,
    banned: Sequence[Sequence[int]],
    min_new_tokens: int,
) -> IntArray:
    """Each row's greedy token: what `process_logits` then the argmax pick from the full
    logits (`full()`), token for token, found among the graph's candidates (`top`) where
    they settle it (`full` is then never called).

    A row is settled when its best allowed candidate (not banned, not an EOS before
    `min_new_tokens`) scores above the lowest candidate: every token with that score is then
    among the candidates, and the lowest id of them is the argmax's pick. A row whose
    candidates are all ruled out, or end in a tie with the best, or are not finite, takes the
    argmax of the full logits (one call of `full` for all such rows). A row's first token
    is the forced BOS where there is one."""
    if top is None:
        return _argmax(full(), counts, ids, banned, min_new_tokens)
    cand = np.asarray(top.ids, dtype=np.int64)
    scores = np.asarray(top.scores, dtype=np.float32)
    ruled_out = (counts < min_new_tokens)[:, None] & (cand == ids.eos_token_id)
    for row, tokens in enumerate(banned):
        if tokens:
            ruled_out[row] |= np.isin(cand[row], tokens)
    allowed = np.where(ruled_out, -np.inf, scores)
    best = allowed.max(axis=1)
    sure = np.isfinite(scores).all(axis=1) & np.isfinite(best)
    if cand.shape[1] < top.vocab:
        sure &= best > scores.min(axis=1)
    tied = ~ruled_out & (allowed == best[:, None])
    chosen: IntArray = np.where(tied, cand, np.iinfo(np.int64).max).min(axis=1)
    if ids.forced_bos_token_id is not None:
        first = counts == 0
        chosen[first] = ids.forced_bos_token_id
        sure |= first
    if not sure.all():
        unsure = ~sure
        chosen[unsure] = _argmax(full(), counts, ids, banned, min_new_tokens)[unsure]
    return chosen


def _argmax(
    logits: Logits,
    counts: IntArray,
    ids: GenerationIds,
    banned: Sequence[Sequence[int]],
    min_new_tokens: int,
) -> IntArray:
    scores = np.array(logits, dtype=np.float32)
    process_logits(scores, counts, ids, banned, 1, min_new_tokens)
    return scores.argmax(axis=-1).astype(np.int64)  # type: ignore[no-any-return]


def greedy(stepper: Stepper, ids: GenerationIds, request: DecodeRequest) -> Decoded:
    rows = len(request.max_new_tokens)
    limits = np.asarray(request.max_new_tokens, dtype=np.int64)
    tokens = np.full(rows, ids.decoder_start_token_id, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(rows)]
    alive = np.ones(rows, dtype=bool)
    beam_idx = np.arange(rows, dtype=np.int64)
    step = 0
    while alive.any() and step < int(limits.max()):
        counts = np.full(rows, step, dtype=np.int64)
        top = stepper.step_top(tokens, beam_idx)
        full = stepper.last_logits if top is not None else partial(stepper.step, tokens, beam_idx)
        nxt = choose(top, full, counts, ids, request.banned, request.min_new_tokens)
        nxt[~alive] = ids.pad_token_id
        for row in np.flatnonzero(alive):
            out[row].append(int(nxt[row]))
        step += 1
        alive &= (nxt != ids.eos_token_id) & (step < limits)
        tokens = nxt
    return Decoded([[seq] for seq in out], step)


def _log_softmax(x: Logits) -> npt.NDArray[np.float32]:
    x = x.astype(np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]


def top_stable(scores: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.int64]:
    """The indices of each row's `n` highest scores, best first, ties by lower index: what
    `np.argsort(-scores, kind="stable")[:, :n]` returns, without sorting whole rows (a row
    is beams x vocabulary, and a full sort of it per step was most of beam search's time)."""
    if n >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :n].astype(np.int64)
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    out = np.empty((scores.shape[0], n), dtype=np.int64)
    for row in range(scores.shape[0]):
        tied = np.flatnonzero(scores[row] >= kth[row])  # every candidate, ties included
        out[row] = tied[np.argsort(-scores[row, tied], kind="stable")[:n]]
    return out


def beam(
    stepper: Stepper, ids: GenerationIds, request: DecodeRequest, length_penalty: float = 1.0
) -> Decoded:
    """transformers' vectorised beam search (early_stopping=False), `num_return` best kept.

    The stepper's rows are the batch's rows repeated `num_beams` times each."""
    k = request.num_beams
    b = len(request.max_new_tokens)
    limits = np.asarray(request.max_new_tokens, dtype=np.int64)[:, None]  # [b, 1]
    max_len = int(limits.max()) + 1
    keep = 2 * k
    running = np.full((b, k, max_len), ids.pad_token_id, dtype=np.int64)
    running[:, :, 0] = ids.decoder_start_token_id
    finished_seqs = running.copy()
    running_scores = np.zeros((b, k), dtype=np.float32)
    running_scores[:, 1:] = NEVER
    finished_scores = np.full((b, k), NEVER, dtype=np.float32)
    finished = np.zeros((b, k), dtype=bool)
    improvable = np.ones((b, 1), dtype=bool)
    beam_idx = np.arange(b * k, dtype=np.int64)
    top_mask = np.arange(keep) < k
    cur = 1
    while True:
        logp = _log_softmax(stepper.step(running[:, :, cur - 1].reshape(-1), beam_idx))
        counts = np.full(b * k, cur - 1, dtype=np.int64)
        process_logits(logp, counts, ids, request.banned, k, request.min_new_tokens)
        vocab = logp.shape[-1]
        acc = (logp.reshape(b, k, vocab) + running_scores[:, :, None]).reshape(b, k * vocab)
        top = top_stable(acc, keep)
        top_scores = np.take_along_axis(acc, top, axis=1)
        src_beam, tok = top // vocab, top % vocab
        cand = np.take_along_axis(running, src_beam[:, :, None], axis=1)
        cand[:, :, cur] = tok
        cand_src = src_beam + (np.arange(b) * k)[:, None]
        hits = (tok == ids.eos_token_id) | (cur + 1 > limits)
        # Running beams for the next step: the best non-finished continuations.
        masked = top_scores + hits.astype(np.float32) * NEVER
        nxt = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        running = np.take_along_axis(cand, nxt[:, :, None], axis=1)
        running_scores = np.take_along_axis(masked, nxt, axis=1)
        beam_idx = np.take_along_axis(cand_src, nxt, axis=1).reshape(-1).astype(np.int64)
        # Finished hypotheses: merge those that just finished among the top k.
        just = hits & top_mask[None, :]
        norm = top_scores / float(cur**length_penalty)
        norm = norm + (~improvable).astype(np.float32) * NEVER + (~just).astype(np.float32) * NEVER
        merged_seqs = np.concatenate([finished_seqs, cand], axis=1)
        merged_scores = np.concatenate([finished_scores, norm], axis=1)
        merged_fin = np.concatenate([finished, just], axis=1)
        best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        finished_seqs = np.take_along_axis(merged_seqs, best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged_scores, best, axis=1)
        finished = np.take_along_axis(merged_fin, best, axis=1)
        cur += 1
        best_running = running_scores[:, :1] / float((cur - 1) ** length_penalty)
        worst_done = np.where(finished, finished_scores.min(axis=1, keepdims=True), NEVER)
        improvable = improvable & np.any(best_running > worst_done, axis=-1, keepdims=True)
        if not improvable.any() or hits.all() or cur >= max_len:
            break
    candidates: list[list[list[int]]] = []
    for row in range(b):
        row_out = []
        for rank in range(min(request.num_return, k)):
            if not finished[row, rank]:
                break  # fewer hypotheses finished than asked for
            seq = finished_seqs[row, rank, 1:cur]
            ended = np.flatnonzero(seq == ids.eos_token_id)
            stop = int(ended[0]) + 1 if ended.size else int(limits[row, 0])
            row_out.append([int(t) for t in seq[:stop]])
        if not row_out:  # nothing finished (cannot happen: the last step finishes all)
            row_out.append([int(t) for t in finished_seqs[row, 0, 1:cur]])
        candidates.append(row_out)
    return Decoded(candidates, cur - 1)
