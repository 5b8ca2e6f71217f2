"""The decoder graph as a `Stepper` (`explain.decoding`): one token a call for every row,
the self-attention cache fed back (appended to by the graph, or written in place by it,
`explain.kv_cache`), the cross keys and values fed as they were encoded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from explain import artifacts
from explain.decoding import Candidates, IntArray, Logits
from explain.kv_cache import InPlaceCache, in_place
from explain.session import OnnxSession, Value, to_host


class CachedSteps:
    """A `Stepper` over the decoder session: it feeds back its own KV cache each step."""

    def __init__(
        self,
        decoder: OnnxSession,
        mask: IntArray,
        cross: dict[str, Value],
        layers: int,
        vocab: int,
        columns: int = 0,
    ) -> None:
        """`columns`: the steps to expect (an in-place cache is made that wide at once)."""
        self.decoder = decoder
        self.vocab = vocab
        self.past_names = [n for i in range(layers) for n in artifacts.past_names(i)]
        self.present_names = [n for i in range(layers) for n in artifacts.present_names(i)]
        rows = self.rows = int(mask.shape[0])
        self.feeds: dict[str, Value] = {"encoder_attention_mask": mask, **cross}
        # A graph that writes its cache in place gets host buffers (`explain.kv_cache`);
        # the others get an empty cache and append to it (a copy per step).
        self.cache = InPlaceCache(decoder, layers, rows, columns) if in_place(decoder) else None
        if self.cache is None:
            shape = self._empty_shape(rows)
            for name in self.past_names:
                self.feeds[name] = decoder.empty(name, shape)
        self.done = 0  # tokens every row has: all rows started together
        self.has_candidates = artifacts.TOP_IDS in decoder.outputs
        self._last: dict[str, Value] | None = None  # the feeds `step_top` ran last
        self.reruns = 0  # steps run again for their full logits

    def _empty_shape(self, rows: int) -> list[int]:
        return empty_cache_shape(self.decoder, self.past_names[0], rows)

    def _run(
        self, tokens: IntArray, beam_idx: IntArray, wanted: Sequence[str]
    ) -> tuple[dict[str, Value], dict[str, Value]]:
        """Run one step for outputs `wanted` (and the cache, fed back); returns the outputs
        and the feeds it ran with."""
        rows = len(tokens)
        self.feeds["input_ids"] = tokens[:, None]
        self.feeds["decoder_position"] = np.full(rows, self.done, dtype=np.int64)
        if self.cache is not None:
            if self.done and not np.array_equal(beam_idx, np.arange(rows)):
                self.cache.reorder(beam_idx, self.done)
            self.cache.ensure_columns(self.done + 1)
            ran = dict(self.feeds)
            out = self.decoder.run_in_place(ran, self.cache.bindings(rows), outputs=wanted)
            self.done += 1
            return dict(out), ran
        self.feeds["beam_idx"] = beam_idx
        self.feeds["decoder_attention_mask"] = np.ones((rows, self.done + 1), dtype=np.int64)
        ran = dict(self.feeds)
        out = self.decoder.run(
            self.feeds, keep=self.present_names, outputs=[*wanted, *self.present_names]
        )
        for past, present in zip(self.past_names, self.present_names, strict=True):
            self.feeds[past] = out[present]
        self.done += 1
        return out, ran

    def step(self, tokens: IntArray, beam_idx: IntArray) -> Logits:
        self._last = None
        out, _ = self._run(tokens, beam_idx, [artifacts.LOGITS])
        return to_host(out[artifacts.LOGITS])

    def step_top(self, tokens: IntArray, beam_idx: IntArray) -> Candidates | None:
        self._last = None  # the cache of the step before goes before this step runs
        if not self.has_candidates:
            return None
        out, self._last = self._run(tokens, beam_idx, [artifacts.TOP_IDS, artifacts.TOP_SCORES])
        return candidates_of(self.decoder, out, self.vocab)

    def last_logits(self) -> Logits:
        if self._last is None:
            raise RuntimeError("no step to compute the logits of")
        self.reruns += 1
        return logits_again(self.decoder, self._last, self.cache, self.rows)


def logits_again(
    decoder: OnnxSession, feeds: Mapping[str, Value], cache: InPlaceCache | None, rows: int
) -> Logits:
    """A step's full logits, the step run again with the feeds it ran with (a cache written
    in place gets the same columns written again)."""
    wanted = [artifacts.LOGITS]
    if cache is not None:
        return decoder.run_in_place(feeds, cache.bindings(rows), outputs=wanted)[artifacts.LOGITS]
    return to_host(decoder.run(feeds, outputs=wanted)[artifacts.LOGITS])


def candidates_of(decoder: OnnxSession, out: Mapping[str, Value], vocab: int) -> Candidates:
    """A step's candidates, their scores in the logits' own precision: where a graph's
    half-precision logits were picked from finer values (ONNX Runtime on CPU computes them
    in float32), rounding makes the scores what the logits hold, in the same order."""
    scores = to_host(out[artifacts.TOP_SCORES])
    precision = decoder.outputs[artifacts.LOGITS].dtype
    if precision != scores.dtype:
        scores = scores.astype(precision)
    return Candidates(to_host(out[artifacts.TOP_IDS]), scores, vocab)


def empty_cache_shape(decoder: OnnxSession, past_name: str, rows: int) -> list[int]:
    """[rows, heads, 0, head_dim]: an empty self-attention cache for `rows` rows."""
    spec = decoder.inputs[past_name]
    heads, head_dim = spec.shape[1], spec.shape[3]
    if not isinstance(heads, int) or not isinstance(head_dim, int):
        raise ValueError(f"{decoder.path.name}: the KV cache needs static heads/head_dim")
    return [rows, heads, 0, head_dim]
