"""Greedy and beam-search decoding over the exported encoder and one-step decoder.

The semantics follow transformers' `generate` (decoder start token, forced BOS, EOS, pad
after EOS, `max_new_tokens` counting every generated token, and for beams the vectorised
beam search with its length penalty and early-stop heuristic), so the parity check can
demand identical tokens. Per-row `banned` token lists (the slots a request cannot fill)
are applied like a logits processor.

Two step runners share the loop: plain numpy feeds, or IO binding, which keeps the KV cache
and the cross-attention keys/values on the device between steps (used on CUDA; it also
works on CPU, which is how it is tested without a GPU).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model_store import onnx_spec as spec
from service.runtime.session import OnnxSession

NEG = float(np.finfo(np.float32).min)
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GenerationIds:
    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int
    forced_bos_token_id: int | None

    @classmethod
    def from_manifest(cls, raw: Mapping[str, object]) -> GenerationIds:
        forced = raw.get("forced_bos_token_id")
        return cls(
            int(raw["decoder_start_token_id"]),  # type: ignore[call-overload]
            int(raw["eos_token_id"]),  # type: ignore[call-overload]
            int(raw["pad_token_id"]),  # type: ignore[call-overload]
            None if forced is None else int(forced),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class Generated:
    tokens: list[list[int]]  # per row, every generated token (forced BOS and EOS included)
    encode_s: float
    decode_s: float
    steps: int


class _StepRunner(Protocol):
    def step(self, tokens: IntArray, beam_idx: IntArray) -> FloatArray: ...


class _NumpyRunner:
    def __init__(
        self, decoder: OnnxSession, mask: IntArray, cross: list[np.ndarray], s: spec.OnnxSpec
    ) -> None:
        self.decoder, self.mask, self.spec = decoder, mask, s
        rows = mask.shape[0]
        empty = np.zeros((rows, s.num_heads, 0, s.head_dim), dtype=np.float32)
        self.feeds: dict[str, np.ndarray] = {"encoder_attention_mask": mask}
        for i in range(s.decoder_layers):
            for name in spec.past_names(i):
                self.feeds[name] = empty
            for name, value in zip(spec.cross_names(i), cross[2 * i : 2 * i + 2], strict=True):
                self.feeds[name] = value

    def step(self, tokens: IntArray, beam_idx: IntArray) -> FloatArray:
        self.feeds["input_ids"] = tokens[:, None]
        self.feeds["beam_idx"] = beam_idx
        outputs = self.decoder.run(self.feeds)
        for i in range(self.spec.decoder_layers):
            for name, value in zip(spec.past_names(i), outputs[1 + 2 * i : 3 + 2 * i], strict=True):
                self.feeds[name] = value
        return outputs[0]


class _IoBindingRunner:
    def __init__(
        self,
        decoder: OnnxSession,
        mask: IntArray,
        cross: list[ort.OrtValue],
        s: spec.OnnxSpec,
        device: str,
    ) -> None:
        self.decoder, self.spec, self.device = decoder, s, device
        rows = mask.shape[0]
        self.mask = ort.OrtValue.ortvalue_from_numpy(mask, device, 0)
        self.cross = cross
        empty_shape = [rows, s.num_heads, 0, s.head_dim]
        self.past = [
            ort.OrtValue.ortvalue_from_shape_and_type(empty_shape, np.float32, device, 0)
            for _ in range(2 * s.decoder_layers)
        ]

    def step(self, tokens: IntArray, beam_idx: IntArray) -> FloatArray:
        binding = self.decoder.raw.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(tokens[:, None]))
        binding.bind_cpu_input("beam_idx", np.ascontiguousarray(beam_idx))
        binding.bind_ortvalue_input("encoder_attention_mask", self.mask)
        for i in range(self.spec.decoder_layers):
            for k, name in enumerate(spec.past_names(i)):
                binding.bind_ortvalue_input(name, self.past[2 * i + k])
            for k, name in enumerate(spec.cross_names(i)):
                binding.bind_ortvalue_input(name, self.cross[2 * i + k])
        binding.bind_output("logits", "cpu")
        for i in range(self.spec.decoder_layers):
            for name in spec.present_names(i):
                binding.bind_output(name, self.device, 0)
        self.decoder.raw.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        self.past = list(outputs[1:])
        return outputs[0].numpy()  # type: ignore[no-any-return]


def _log_softmax(x: FloatArray) -> FloatArray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]


class Seq2SeqGenerator:
    """Runs encoder once and decoder once per generated token, for a whole batch."""

    def __init__(
        self,
        encoder: OnnxSession,
        decoder: OnnxSession,
        onnx: spec.OnnxSpec,
        ids: GenerationIds,
        *,
        io_binding: bool | None = None,
    ) -> None:
        self.encoder, self.decoder, self.spec, self.ids = encoder, decoder, onnx, ids
        self.io_binding = decoder.provider == "cuda" if io_binding is None else io_binding
        self.device = "cuda" if decoder.provider == "cuda" else "cpu"
        self.encoder.check_inputs(["input_ids", "attention_mask", "user_embeds"])

    def _encode(self, input_ids: IntArray, mask: IntArray, users: FloatArray) -> _StepRunner:
        feeds: dict[str, np.ndarray] = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "user_embeds": users,
        }
        if not self.io_binding:
            return _NumpyRunner(self.decoder, mask, self.encoder.run(feeds), self.spec)
        binding = self.encoder.raw.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.encoder.output_names:
            binding.bind_output(name, self.device, 0)
        self.encoder.raw.run_with_iobinding(binding)
        return _IoBindingRunner(
            self.decoder, mask, list(binding.get_outputs()), self.spec, self.device
        )

    def _process(
        self,
        scores: FloatArray,
        step: int,
        banned: Sequence[Sequence[int]] | None,
        per_row: int,
        min_new_tokens: int,
    ) -> None:
        """Min length, forced BOS, then the per-row bans: transformers' processor order."""
        if step < min_new_tokens:
            scores[:, self.ids.eos_token_id] = -np.inf
        if step == 0 and self.ids.forced_bos_token_id is not None:
            scores[:] = -np.inf
            scores[:, self.ids.forced_bos_token_id] = 0.0
        if banned is not None:
            for row, ids in enumerate(banned):
                if ids:
                    scores[row * per_row : (row + 1) * per_row, list(ids)] = NEG

    def generate(
        self,
        input_ids: IntArray,
        attention_mask: IntArray,
        user_embeds: FloatArray,
        *,
        max_new_tokens: Sequence[int],
        num_beams: int = 1,
        banned: Sequence[Sequence[int]] | None = None,
        min_new_tokens: int = 0,
    ) -> Generated:
        """`max_new_tokens` per row; `min_new_tokens` bans EOS until that many tokens exist."""
        if num_beams > 1:
            return self._beam(
                input_ids,
                attention_mask,
                user_embeds,
                max_new_tokens,
                num_beams,
                banned,
                min_new_tokens,
            )
        start = time.perf_counter()
        runner = self._encode(input_ids, attention_mask, user_embeds)
        encoded = time.perf_counter()
        rows = input_ids.shape[0]
        limits = np.asarray(max_new_tokens, dtype=np.int64)
        tokens = np.full(rows, self.ids.decoder_start_token_id, dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(rows)]
        alive = np.ones(rows, dtype=bool)
        beam_idx = np.arange(rows, dtype=np.int64)
        step = 0
        while alive.any() and step < int(limits.max()):
            scores = runner.step(tokens, beam_idx).astype(np.float32, copy=True)
            self._process(scores, step, banned, 1, min_new_tokens)
            nxt = scores.argmax(axis=-1).astype(np.int64)
            nxt[~alive] = self.ids.pad_token_id
            for row in np.flatnonzero(alive):
                out[row].append(int(nxt[row]))
            step += 1
            alive &= (nxt != self.ids.eos_token_id) & (step < limits)
            tokens = nxt
        return Generated(out, encoded - start, time.perf_counter() - encoded, step)

    def _beam(
        self,
        input_ids: IntArray,
        attention_mask: IntArray,
        user_embeds: FloatArray,
        max_new_tokens: Sequence[int],
        k: int,
        banned: Sequence[Sequence[int]] | None,
        min_new_tokens: int,
        length_penalty: float = 1.0,
    ) -> Generated:
        """A numpy port of transformers' vectorised beam search (early_stopping=False)."""
        start = time.perf_counter()
        b = input_ids.shape[0]
        runner = self._encode(
            np.repeat(input_ids, k, axis=0),
            np.repeat(attention_mask, k, axis=0),
            np.repeat(user_embeds, k, axis=0),
        )
        encoded = time.perf_counter()
        limits = np.asarray(max_new_tokens, dtype=np.int64)[:, None]  # [b, 1]
        max_len = int(limits.max()) + 1
        keep = 2 * k
        running = np.full((b, k, max_len), self.ids.pad_token_id, dtype=np.int64)
        running[:, :, 0] = self.ids.decoder_start_token_id
        finished_seqs = running.copy()
        running_scores = np.zeros((b, k), dtype=np.float32)
        running_scores[:, 1:] = -1e9
        finished_scores = np.full((b, k), -1e9, dtype=np.float32)
        finished = np.zeros((b, k), dtype=bool)
        improvable = np.ones((b, 1), dtype=bool)
        beam_idx = np.arange(b * k, dtype=np.int64)
        top_mask = np.arange(keep) < k
        cur = 1
        while True:
            logits = runner.step(running[:, :, cur - 1].reshape(-1), beam_idx)
            logp = _log_softmax(logits.astype(np.float32))
            self._process(logp, cur - 1, banned, k, min_new_tokens)
            vocab = logp.shape[-1]
            acc = (logp.reshape(b, k, vocab) + running_scores[:, :, None]).reshape(b, k * vocab)
            top = np.argsort(-acc, axis=1, kind="stable")[:, :keep]
            top_scores = np.take_along_axis(acc, top, axis=1)
            src_beam, tok = top // vocab, top % vocab
            cand = np.take_along_axis(running, src_beam[:, :, None], axis=1)
            cand[:, :, cur] = tok
            cand_src = src_beam + (np.arange(b) * k)[:, None]
            hits = (tok == self.ids.eos_token_id) | (cur + 1 > limits)
            # Running beams for the next step: the best non-finished continuations.
            masked = top_scores + hits.astype(np.float32) * -1e9
            nxt = np.argsort(-masked, axis=1, kind="stable")[:, :k]
            running = np.take_along_axis(cand, nxt[:, :, None], axis=1)
            running_scores = np.take_along_axis(masked, nxt, axis=1)
            beam_idx = np.take_along_axis(cand_src, nxt, axis=1).reshape(-1).astype(np.int64)
            # Finished hypotheses: merge those that just finished among the top k.
            just = hits & top_mask[None, :]
            norm = top_scores / float(cur**length_penalty)
            norm = (
                norm + (~improvable).astype(np.float32) * -1e9 + (~just).astype(np.float32) * -1e9
            )
            merged_seqs = np.concatenate([finished_seqs, cand], axis=1)
            merged_scores = np.concatenate([finished_scores, norm], axis=1)
            merged_fin = np.concatenate([finished, just], axis=1)
            best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            finished_seqs = np.take_along_axis(merged_seqs, best[:, :, None], axis=1)
            finished_scores = np.take_along_axis(merged_scores, best, axis=1)
            finished = np.take_along_axis(merged_fin, best, axis=1)
            cur += 1
            best_running = running_scores[:, :1] / float((cur - 1) ** length_penalty)
            worst_done = np.where(finished, finished_scores.min(axis=1, keepdims=True), -1e9)
            improvable = improvable & np.any(best_running > worst_done, axis=-1, keepdims=True)
            if not improvable.any() or hits.all() or cur >= max_len:
                break
        tokens = []
        for row in range(b):
            seq = finished_seqs[row, 0, 1:cur]
            ended = np.flatnonzero(seq == self.ids.eos_token_id)
            stop = int(ended[0]) + 1 if ended.size else int(limits[row, 0])
            tokens.append([int(t) for t in seq[:stop]])
        return Generated(tokens, encoded - start, time.perf_counter() - encoded, cur - 1)
