"""Batch generation with the PyTorch student, decoding exactly as the service does.

Greedy search, the same slot ban per request (so a slot the request cannot fill is never
written), and the same slot filling. Parity guarantees the ONNX path gives the same tokens,
so evaluation numbers describe what the service answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from model_store.modeling import UserAwareBart, banned_slot_matrix, plain_generation_config
from model_store.prompt import InputConfig, build_input
from model_store.slots import render
from model_store.tokenizer import PrismTokenizer
from model_store.users import UNKNOWN_ROW
from service.runtime.explainer import pad_batch
from training.examples import request_of


@dataclass(frozen=True)
class Prediction:
    template: str  # the slot template the model wrote
    text: str  # after filling from the request
    unfilled: tuple[str, ...]
    defect: str | None = None  # why the template is unusable (`model_store.quality`)

    @property
    def fallback(self) -> bool:
        """The service would answer with the evidence sentence instead."""
        return self.defect is not None


@torch.no_grad()
def predict(
    model: UserAwareBart,
    records: Sequence[Mapping[str, Any]],
    *,
    tokenizer: PrismTokenizer,
    input_config: InputConfig,
    generation: Mapping[str, Any],
    user_rows: Mapping[str, int] | None,
    batch_size: int = 64,
    max_new_tokens: int = 48,
    ban_unfillable: bool = True,
    progress: bool = False,
    desc: str = "predict",
    serve_fallback: bool = True,
) -> list[Prediction]:
    """`user_rows=None` gives every request the zero vector (the cold-start path).

    `serve_fallback=False` keeps what the model wrote even when it is unusable (evaluation
    scores the model, and counts how often the service would have had to step in)."""
    model = model.eval()
    device = next(model.parameters()).device
    config = plain_generation_config(generation)
    order = sorted(range(len(records)), key=lambda i: len(records[i]["history"]))
    results: dict[int, Prediction] = {}
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
        members = order[start : start + batch_size]
        requests = [request_of(records[i]) for i in members]
        built = [build_input(h, it, tokenizer, input_config) for h, it in requests]
        ids, mask = pad_batch([b.input_ids for b in built], tokenizer.pad_id)
        known = user_rows or {}
        rows = [known.get(str(records[i]["user_id"]), UNKNOWN_ROW) for i in members]
        vocab = int(model.bart.config.vocab_size or 0)
        fillable = [b.slot_values for b in built]
        banned = banned_slot_matrix(tokenizer, fillable, vocab) if ban_unfillable else None
        generated = model.generate(
            torch.from_numpy(ids).to(device),
            torch.from_numpy(mask).to(device),
            torch.tensor(rows, device=device),
            generation_config=config,
            banned_tokens=banned,
            max_new_tokens=max_new_tokens,
        )
        for index, row, b in zip(members, generated.tolist(), built, strict=True):
            template = tokenizer.decode(row[1:])
            filled = render(template, b.slot_values, serve_fallback=serve_fallback)
            results[index] = Prediction(template, filled.text, filled.unfilled, filled.defect)
    return [results[i] for i in range(len(records))]
