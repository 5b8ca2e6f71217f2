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

import torch
from tqdm import tqdm
from transformers import BartConfig, BartForConditionalGeneration, get_linear_schedule_with_warmup

from explain.input_format import InputConfig, format_descriptor
from explain.tokenizer import PrismTokenizer
from training.batches import (
    IGNORE_INDEX,
    StudentExample,
    batch_loss,
    bucketed_batches,
    collate,
    evaluate_loss,
)
from training.checkpoint import STATE_FILE, load_state, save_state, seed_everything
from training.modeling import PrismMeta, UserAwareBart, generation_ids

__all__ = [
    "IGNORE_INDEX",
    "SCRATCH",
    "StudentExample",
    "StudentShape",
    "TrainConfig",
    "TrainResult",
    "batch_loss",
    "build_student",
    "collate",
    "evaluate_loss",
    "iter_records",
    "pick_device",
    "train_student",
]

logger = logging.getLogger(__name__)
SCRATCH = "scratch"


@dataclass(frozen=True)
class StudentShape:
    """The BART shape used when training from scratch (no pretrained checkpoint offline)."""

    d_model: int = 128
    layers: int = 3  # encoder and decoder each
    heads: int = 4
    ffn: int = 512
    max_positions: int = 256
    dropout: float = 0.1


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
            dropout=shape.dropout,
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
    seed_everything(config.seed)
    num_users = max(user_rows.values(), default=0)
    model = build_student(
        config.base, tokenizer, num_users, config.shape, use_users=config.use_users
    ).to(device)
    optimizer = _optimizer(model, config)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(config.warmup_ratio * total_steps), total_steps
    )
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
    if (last / STATE_FILE).exists():
        resumed = UserAwareBart.load(last, device=device)
        model.load_state_dict(resumed.state_dict())
        state = load_state(last, optimizer)
        scheduler.load_state_dict(state["scheduler"])
        # The optimizer's own learning rates are not in its saved state: take the schedule's.
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        start_epoch, best_loss, best_epoch = (
            state["epoch"] + 1,
            state["best_loss"],
            state["best_epoch"],
        )
        history = state["history"]
        logger.info("resuming %s after epoch %d", out_dir, state["epoch"])
    rng = random.Random(config.seed)
    for _ in range(start_epoch):  # replay the shuffles so a resumed run sees the same batches
        bucketed_batches(train, config.batch_size, rng)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        torch.manual_seed(config.seed * 1000 + epoch)  # dropout masks per epoch, resumable
        batches = bucketed_batches(train, config.batch_size, rng)
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
            running += float(loss.detach())
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
        save_state(
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
