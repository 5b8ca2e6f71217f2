"""Student examples as tensors: length-bucketed batches, collation, and the loss on a batch.

Labels are padded with `IGNORE_INDEX`, which the loss skips; the decoder's inputs are the
labels shifted right behind the decoder start token.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from explain.tokenizer import PrismTokenizer
from training.modeling import UserAwareBart

IGNORE_INDEX = -100


@dataclass(frozen=True)
class StudentExample:
    input_ids: list[int]
    user_row: int
    labels: list[int]


def bucketed_batches(
    examples: Sequence[StudentExample], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Length-bucketed batches: sort within shuffled chunks so padding stays small on CPU."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    # An example file on disk knows its lengths without reading its rows.
    known = getattr(examples, "lengths", None)
    lengths = (
        known if known is not None else [len(examples[i].input_ids) for i in range(len(order))]
    )
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: int(lengths[i]))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(
    examples: Sequence[StudentExample], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in examples)
    target = max(len(e.labels) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), target), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[row, : len(e.input_ids)] = 1
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    rows = torch.tensor([e.user_row for e in examples], dtype=torch.long)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "user_rows": rows.to(device),
        "labels": labels.to(device),
    }


def _decoder_inputs(labels: torch.Tensor, pad_id: int, start_id: int) -> torch.Tensor:
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_id)


def batch_loss(
    model: UserAwareBart,
    batch: Mapping[str, torch.Tensor],
    tokenizer: PrismTokenizer,
    smoothing: float = 0.0,
) -> torch.Tensor:
    decoder_input_ids = _decoder_inputs(batch["labels"], tokenizer.pad_id, tokenizer.eos_id)
    out = model(
        batch["input_ids"],
        batch["attention_mask"],
        batch["user_rows"],
        decoder_input_ids=decoder_input_ids,
    )
    logits = out.logits
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        batch["labels"].reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=smoothing,
    )


@torch.no_grad()
def evaluate_loss(
    model: UserAwareBart,
    examples: Sequence[StudentExample],
    tokenizer: PrismTokenizer,
    device: torch.device,
    batch_size: int = 64,
) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collate(chunk, tokenizer.pad_id, device)
        tokens = int((batch["labels"] != IGNORE_INDEX).sum())
        total += float(batch_loss(model, batch, tokenizer)) * tokens
        count += tokens
    return total / max(count, 1)
