"""Fine-tuning the student on distilled explanations (the paper's section 4.3).

AdamW with linear warm-up and decay, gradient clipping, pad labels set to -100, and the user
table W_u randomly initialised and trained jointly with BART. Validation loss every epoch;
the best epoch is kept. A run resumes from its last completed epoch: weights, optimizer
state and RNG state are all saved as safetensors/JSON, never as pickles.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import BartConfig, BartForConditionalGeneration

from model_store.modeling import PrismMeta, UserAwareBart, generation_ids
from model_store.prompt import InputConfig, format_descriptor
from model_store.tokenizer import PrismTokenizer

logger = logging.getLogger(__name__)
SCRATCH = "scratch"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class StudentShape:
    """The BART shape used when training from scratch (no pretrained checkpoint offline)."""

    d_model: int = 128
    layers: int = 3  # encoder and decoder each
    heads: int = 4
    ffn: int = 512
    max_positions: int = 256


@dataclass(frozen=True)
class TrainConfig:
    base: str = SCRATCH  # "scratch", or a hub id / local path such as facebook/bart-base
    shape: StudentShape = field(default_factory=StudentShape)
    use_users: bool = True  # False trains the "Prism w/o User" ablation
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3  # from scratch; use ~5e-5 for a pretrained base
    user_lr: float | None = None  # the user table's own rate (default: lr)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    max_target_tokens: int = 64
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StudentExample:
    input_ids: list[int]
    user_row: int
    labels: list[int]


@dataclass
class TrainResult:
    best_dir: Path
    best_epoch: int
    best_valid_loss: float
    history: list[dict[str, float]]
    seconds: float
    parameters: int


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build_student(
    base: str, tokenizer: PrismTokenizer, num_users: int, shape: StudentShape, *, use_users: bool
) -> UserAwareBart:
    if base == SCRATCH:
        config = BartConfig(
            vocab_size=tokenizer.vocab_size,
            d_model=shape.d_model,
            encoder_layers=shape.layers,
            decoder_layers=shape.layers,
            encoder_attention_heads=shape.heads,
            decoder_attention_heads=shape.heads,
            encoder_ffn_dim=shape.ffn,
            decoder_ffn_dim=shape.ffn,
            max_position_embeddings=shape.max_positions,
            dropout=0.1,
            attention_dropout=0.0,
            pad_token_id=tokenizer.pad_id,
            bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id,
            decoder_start_token_id=tokenizer.eos_id,
            forced_eos_token_id=None,
        )
        bart = BartForConditionalGeneration(config)
    else:
        bart = BartForConditionalGeneration.from_pretrained(base)
        bart.resize_token_embeddings(tokenizer.vocab_size)
    return UserAwareBart(bart, num_users, use_users=use_users)


def _batches(
    examples: Sequence[StudentExample], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Length-bucketed batches: sort within shuffled chunks so padding stays small on CPU."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(examples[i].input_ids))
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


def _optimizer(model: UserAwareBart, config: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay, users = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("user_embeddings"):
            users.append(param)
        elif param.ndim < 2 or "layernorm" in name or "layer_norm" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if users:
        # No decay on W_u: decay would pull rarely seen users towards the unknown-user vector.
        groups.append({"params": users, "weight_decay": 0.0, "lr": config.user_lr or config.lr})
    return torch.optim.AdamW(groups, lr=config.lr)


def _schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _save_state(
    directory: Path, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for key, value in slots.items():
            tensors[f"{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_file(
        {k: v.contiguous().cpu() for k, v in tensors.items()},
        str(directory / "optimizer.safetensors"),
    )
    (directory / "trainer_state.json").write_text(json.dumps(state, indent=2))


def _load_state(directory: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    tensors = load_file(str(directory / "optimizer.safetensors"))
    current = optimizer.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = value
    current["state"] = restored
    optimizer.load_state_dict(current)
    return dict(json.loads((directory / "trainer_state.json").read_text()))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_student(
    train: Sequence[StudentExample],
    valid: Sequence[StudentExample],
    *,
    tokenizer: PrismTokenizer,
    user_rows: Mapping[str, int],
    input_config: InputConfig,
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
    extra_meta: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train, keep the best epoch in `out_dir/best` and resume from `out_dir/last`."""
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    _seed_everything(config.seed)
    num_users = max(user_rows.values(), default=0)
    model = build_student(
        config.base, tokenizer, num_users, config.shape, use_users=config.use_users
    ).to(device)
    optimizer = _optimizer(model, config)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = _schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    meta = PrismMeta(
        base_model=config.base
        if config.base != SCRATCH
        else "scratch BartConfig + ByteLevel BPE trained on the corpus",
        input_format=format_descriptor(input_config),
        generation=generation_ids(tokenizer),
        d_model=int(model.config.d_model or 0),
        num_users=num_users,
        use_users=config.use_users,
        extra={"train_config": config.to_dict(), **(extra_meta or {})},
    )
    last, best = out_dir / "last", out_dir / "best"
    history: list[dict[str, float]] = []
    start_epoch, best_loss, best_epoch = 0, math.inf, -1
    if (last / "trainer_state.json").exists():
        resumed = UserAwareBart.load(last, device=device)
        model.load_state_dict(resumed.state_dict())
        state = _load_state(last, optimizer)
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best_loss, best_epoch = (
            state["epoch"] + 1,
            state["best_loss"],
            state["best_epoch"],
        )
        history = state["history"]
        logger.info("resuming %s after epoch %d", out_dir, state["epoch"])
    rng = random.Random(config.seed)
    for _ in range(start_epoch):  # replay the shuffles so a resumed run sees the same batches
        _batches(train, config.batch_size, rng)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        torch.manual_seed(config.seed * 1000 + epoch)  # dropout masks per epoch, resumable
        batches = _batches(train, config.batch_size, rng)
        bar = tqdm(
            batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, unit="batch"
        )
        running, seen, epoch_start = 0.0, 0, time.perf_counter()
        for members in bar:
            batch = collate([train[i] for i in members], tokenizer.pad_id, device)
            loss = batch_loss(model, batch, tokenizer, config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            running += float(loss)
            seen += len(members)
            bar.set_postfix(
                loss=f"{running / (bar.n + 1):.3f}",
                samples_s=f"{seen / (time.perf_counter() - epoch_start):.0f}",
            )
        valid_loss = evaluate_loss(model, valid, tokenizer, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / max(len(batches), 1),
                "valid_loss": valid_loss,
            }
        )
        logger.info(
            "epoch %d: train %.4f valid %.4f", epoch + 1, history[-1]["train_loss"], valid_loss
        )
        if valid_loss < best_loss:
            best_loss, best_epoch = valid_loss, epoch + 1
            model.save(best, user_rows=user_rows, tokenizer=tokenizer, meta=meta)
        model.save(last, user_rows=user_rows, tokenizer=tokenizer, meta=meta)
        _save_state(
            last,
            optimizer,
            {
                "epoch": epoch,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "history": history,
                "scheduler": scheduler.state_dict(),
            },
        )
    parameters = sum(p.numel() for p in model.parameters())
    return TrainResult(
        best, best_epoch, best_loss, history, time.perf_counter() - started, parameters
    )


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
