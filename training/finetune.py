"""Fine-tuning the student on distilled explanations (the paper's section 4.3).

AdamW with linear warm-up and decay, gradient clipping, pad labels set to -100, and the user
table W_u randomly initialised and trained jointly with BART. The loop runs on `accelerate`:
the same code on a CPU, on one GPU with mixed precision, or on several with DDP under
`accelerate launch`. Validation every N steps (or per epoch), the best model kept;
checkpoints every N steps with exact mid-epoch resume. Weights, optimizer state and the
run's position are saved as safetensors/JSON, never as pickles.

The run's configuration, the student and its optimizer are built in `training.finetune_setup`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

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
from training.finetune_setup import (
    SCRATCH,
    TrainConfig,
    build_student,
    make_accelerator,
    make_optimizer,
)
from training.modeling import PrismMeta, UserAwareBart, generation_ids

__all__ = [
    "IGNORE_INDEX",
    "StudentExample",
    "TrainResult",
    "batch_loss",
    "collate",
    "evaluate_loss",
    "iter_records",
    "train_student",
]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_dir: Path
    best_epoch: int
    best_valid_loss: float
    history: list[dict[str, float]]
    seconds: float
    parameters: int


@dataclass
class _Progress:
    """Where a run is: what a checkpoint saves and a resumed run starts from."""

    epoch: int = 0
    groups_done: int = 0  # optimizer steps already taken in `epoch`
    step: int = 0  # optimizer steps since the start
    best_loss: float = math.inf
    best_step: int = -1
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)
    loss_sum: float = 0.0  # this epoch's training loss so far, over `loss_steps` steps
    loss_steps: int = 0


def _groups(batches: list[list[int]], size: int) -> list[list[list[int]]]:
    return [batches[k : k + size] for k in range(0, len(batches), size)]


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
    """Train with `accelerate`; keep the best model in `out_dir/best`, resume from
    `out_dir/last`.

    One optimizer step takes `grad_accum` batches of `batch_size` per process. Every
    `save_every_steps` steps (and at each epoch's end) the run is checkpointed: weights,
    optimizer, schedule and its position in the epoch; a resumed run replays the seeded
    shuffles and skips the batches already done, so it ends exactly as an uninterrupted one.
    Validation runs every `eval_every_steps` steps (0: at each epoch's end).
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    accelerator = make_accelerator(config)
    world, rank = accelerator.num_processes, accelerator.process_index
    seed_everything(config.seed)
    num_users = max(user_rows.values(), default=0)
    student = build_student(
        config.base, tokenizer, num_users, config.shape, use_users=config.use_users
    )
    optimizer = make_optimizer(student, config)
    batches_per_process = math.ceil(len(train) / config.batch_size) // world or 1
    steps_per_epoch = math.ceil(batches_per_process / config.grad_accum)
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
        d_model=int(student.config.d_model or 0),
        num_users=num_users,
        use_users=config.use_users,
        extra={"train_config": config.to_dict(), **(extra_meta or {})},
    )
    last, best = out_dir / "last", out_dir / "best"
    at = _Progress()
    if (last / STATE_FILE).exists():
        student.load_state_dict(UserAwareBart.load(last).state_dict())
        state = load_state(last, optimizer)
        scheduler.load_state_dict(state["scheduler"])
        # The optimizer's own learning rates are not in its saved state: take the schedule's.
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        at = _Progress(**state["progress"])
        logger.info("resuming %s at epoch %d, step %d", out_dir, at.epoch + 1, at.step)
    model, optimizer = accelerator.prepare(student, optimizer)
    device = accelerator.device

    def checkpoint(*, improved: bool) -> None:
        if accelerator.is_main_process:
            plain = accelerator.unwrap_model(model)
            if improved:
                plain.save(best, user_rows=user_rows, tokenizer=tokenizer, meta=meta)
            plain.save(last, user_rows=user_rows, tokenizer=tokenizer, meta=meta)
            state = {"progress": asdict(at), "scheduler": scheduler.state_dict()}
            save_state(last, optimizer, state)
        accelerator.wait_for_everyone()

    def validate(train_loss: float) -> bool:
        loss = evaluate_loss(accelerator.unwrap_model(model), valid, tokenizer, device)
        at.history.append(
            {"epoch": at.epoch + 1, "step": at.step, "train_loss": train_loss, "valid_loss": loss}
        )
        logger.info("epoch %d step %d: train %.4f valid %.4f", at.epoch + 1, at.step,
                    train_loss, loss)  # fmt: skip
        if loss < at.best_loss:
            at.best_loss, at.best_step, at.best_epoch = loss, at.step, at.epoch + 1
            return True
        return False

    rng = random.Random(config.seed)
    for _ in range(at.epoch):  # replay the shuffles so a resumed run sees the same batches
        bucketed_batches(train, config.batch_size, rng)
    while at.epoch < config.epochs:
        model.train()
        everyone = bucketed_batches(train, config.batch_size, rng)
        mine = everyone[rank::world][:batches_per_process]  # equal shares keep DDP in step
        groups = _groups(mine, config.grad_accum)
        bar = tqdm(total=len(groups), initial=at.groups_done, unit="step",
                   desc=f"epoch {at.epoch + 1}/{config.epochs}",
                   disable=not progress or not accelerator.is_main_process)  # fmt: skip
        epoch_start = time.perf_counter()
        for counted, step_batches in enumerate(groups[at.groups_done :], 1):
            # Dropout masks from the step number: the same on a resumed run.
            torch.manual_seed(config.seed * 1_000_003 + at.step)
            parts = len(step_batches)
            for k, members in enumerate(step_batches):
                batch = collate([train[i] for i in members], tokenizer.pad_id, device)
                # Gradients are all-reduced once per step, on its last batch.
                with nullcontext() if k == parts - 1 else accelerator.no_sync(model):
                    loss = batch_loss(model, batch, tokenizer, config.label_smoothing)
                    accelerator.backward(loss / parts)
                at.loss_sum += float(loss.detach()) / parts
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            at.step += 1
            at.groups_done += 1
            at.loss_steps += 1
            bar.update(1)
            rate = counted * config.grad_accum * config.batch_size * world
            rate /= time.perf_counter() - epoch_start
            bar.set_postfix(loss=f"{at.loss_sum / at.loss_steps:.3f}", samples_s=f"{rate:.0f}")
            improved = False
            if config.eval_every_steps and at.step % config.eval_every_steps == 0:
                improved = validate(at.loss_sum / at.loss_steps)
            if improved or (config.save_every_steps and at.step % config.save_every_steps == 0):
                checkpoint(improved=improved)
        bar.close()
        epoch_loss = at.loss_sum / max(at.loss_steps, 1)
        improved = validate(epoch_loss) if not config.eval_every_steps else False
        at.epoch, at.groups_done, at.loss_sum, at.loss_steps = at.epoch + 1, 0, 0.0, 0
        checkpoint(improved=improved)
    parameters = sum(p.numel() for p in student.parameters())
    return TrainResult(
        best, at.best_epoch, at.best_loss, at.history, time.perf_counter() - started, parameters
    )


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
