"""The PyTorch backend of `Explainer.generate`: transformers' own `generate`, as the reference.

The ONNX Runtime backend (`explain.onnx_backend`) must produce the same tokens as this one;
the parity check (`training.parity`) runs both through the same `Explainer` on the same
prepared requests. It is also how evaluation decodes before a version has ONNX graphs, and
the "HF eager" engine of the benchmarks.

The user vectors come from the explainer's user table (as for ONNX), and are added to the
token embeddings here: `inputs_embeds = embed_tokens(ids) + v_u`, exactly the model's
`UserAwareBart.embed`, so the table, not the module's own copy, is what decodes.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor

from explain.artifacts import TOKENIZER_DIR, USERS_DIR
from explain.decoding import Decoded, DecodeRequest
from explain.explainer import DEFAULT_DECODE, DecodeSettings, Explainer
from explain.input_format import FORMAT_NAME, FORMAT_VERSION, InputConfig, check_format
from explain.onnx_backend import EncodedBatch, Generated
from explain.tokenizer import PrismTokenizer
from explain.types import ModelInfo
from explain.users import UserTable
from explain.verifier import Verifier, load_inventory
from training.modeling import PrismMeta, UserAwareBart


def plain_generation_config(ids: Mapping[str, int], **overrides: Any) -> GenerationConfig:
    """No hidden extras (bart-base ships num_beams=4 and no_repeat_ngram_size=3): what the
    ONNX decoder does, PyTorch does too."""
    settings: dict[str, Any] = {
        **ids,
        "num_beams": 1,
        "do_sample": False,
        "no_repeat_ngram_size": 0,
        "length_penalty": 1.0,
        "early_stopping": False,
    }
    settings.update(overrides)
    return GenerationConfig(**settings)  # type: ignore[no-untyped-call]


class SlotMaskProcessor(LogitsProcessor):
    """Forbids, per row, the slot tokens that this row's request cannot fill."""

    def __init__(self, banned: torch.Tensor) -> None:  # bool [batch, vocab]
        self.banned = banned

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = self.banned.repeat_interleave(scores.shape[0] // self.banned.shape[0], dim=0)
        return scores.masked_fill(rows.to(scores.device), torch.finfo(scores.dtype).min)  # type: ignore[return-value]


def banned_matrix(banned: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """bool [batch, vocab]: True where a token is banned for that row."""
    matrix = torch.zeros((len(banned), vocab_size), dtype=torch.bool)
    for row, ids in enumerate(banned):
        matrix[row, list(ids)] = True
    return matrix


class TorchSeq2Seq:
    """Implements `explain.explainer.GenerationBackend` with `BartForConditionalGeneration`."""

    def __init__(self, model: UserAwareBart, generation: Mapping[str, int]) -> None:
        self.model = model.eval()
        self.generation = dict(generation)
        self.device = next(model.parameters()).device

    @property
    def max_new_tokens_limit(self) -> int:
        return int(self.model.config.max_position_embeddings) - 1

    @torch.no_grad()
    def generate(self, batch: EncodedBatch, request: DecodeRequest) -> Generated:
        """Rows with different token limits decode in separate `generate` calls (one limit
        per call is all transformers offers), so each row stops exactly where ONNX's does."""
        start = time.perf_counter()
        groups: dict[int, list[int]] = {}
        for row, limit in enumerate(request.max_new_tokens):
            groups.setdefault(limit, []).append(row)
        candidates: list[list[list[int]] | None] = [None] * batch.rows
        steps = 0
        vocab = int(self.model.config.vocab_size or 0)
        pad = self.generation["pad_token_id"]
        for limit, rows in groups.items():
            ids = torch.from_numpy(batch.input_ids[rows]).to(self.device)
            mask = torch.from_numpy(batch.attention_mask[rows]).to(self.device)
            users = torch.from_numpy(batch.user_vectors[rows]).to(self.device)
            embeds = self.model.bart.model.encoder.embed_tokens(ids) + users[:, None, :]
            returns = min(request.num_return, request.num_beams)
            config = plain_generation_config(
                self.generation,
                num_beams=request.num_beams,
                num_return_sequences=returns,
                min_new_tokens=request.min_new_tokens or None,
            )
            config = copy.deepcopy(config)
            config.max_new_tokens = limit
            processors = []
            if any(request.banned[r] for r in rows):
                processors.append(
                    SlotMaskProcessor(banned_matrix([request.banned[r] for r in rows], vocab))
                )
            out = self.model.bart.generate(
                inputs_embeds=embeds,
                attention_mask=mask,
                generation_config=config,
                logits_processor=processors,
            )
            steps = max(steps, int(out.shape[1]) - 1)
            sequences = out.tolist()
            for k, row in enumerate(rows):
                mine = sequences[k * returns : (k + 1) * returns]
                candidates[row] = [_strip(seq[1:], pad) for seq in mine]
        elapsed = time.perf_counter() - start
        decoded = Decoded([c for c in candidates if c is not None], steps)
        # transformers does not split encoding from decoding: all of it counts as decode.
        return Generated(decoded, 0.0, elapsed)

    @torch.no_grad()
    def next_logits(self, batch: EncodedBatch, prefix: Sequence[int]) -> torch.Tensor:
        """The logits [vocab] of a one-row batch's next token after the generated `prefix`
        (the tokens after the decoder start), as `generate` saw them before any processor."""
        ids = torch.from_numpy(batch.input_ids).to(self.device)
        mask = torch.from_numpy(batch.attention_mask).to(self.device)
        users = torch.from_numpy(batch.user_vectors).to(self.device)
        embeds = self.model.bart.model.encoder.embed_tokens(ids) + users[:, None, :]
        start = [self.generation["decoder_start_token_id"], *prefix]
        decoder_ids = torch.tensor([start], dtype=torch.long, device=self.device)
        out = self.model.bart(
            inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_ids
        )
        logits: torch.Tensor = out.logits[0, -1].float().cpu()
        return logits


def _strip(tokens: list[int], pad: int) -> list[int]:
    """A row's generated tokens without the padding `generate` adds after EOS."""
    end = len(tokens)
    while end and tokens[end - 1] == pad:
        end -= 1
    return tokens[:end]


def torch_explainer(
    model_dir: Path,
    *,
    model: UserAwareBart | None = None,
    users: UserTable | None = None,
    input_config: InputConfig | None = None,
    decode: DecodeSettings = DEFAULT_DECODE,
    device: str | torch.device = "cpu",
    ban_unfillable: bool = True,
) -> Explainer:
    """The `Explainer` of a trained model directory, decoding with PyTorch.

    `model` and `users` replace the directory's weights and user table (evaluation passes an
    untrained base with its own random user vectors)."""
    meta = PrismMeta.load(model_dir)
    model = model if model is not None else UserAwareBart.load(model_dir, device=device)
    tokenizer = PrismTokenizer.from_file(model_dir / TOKENIZER_DIR)
    users = users if users is not None else UserTable.load(model_dir / USERS_DIR, mmap=False)
    info = ModelInfo(
        name=model_dir.name,
        version="unpublished",
        provider=f"torch-{next(model.parameters()).device.type}",
        input_format=f"{FORMAT_NAME}/{FORMAT_VERSION}",
        num_users=users.num_users,
        d_model=meta.d_model,
    )
    return Explainer(
        TorchSeq2Seq(model, meta.generation),
        tokenizer,
        users,
        input_config or check_format(meta.input_format),
        info,
        decode=decode,
        ban_unfillable=ban_unfillable,
        verifier=Verifier(load_inventory(model_dir)),
    )
