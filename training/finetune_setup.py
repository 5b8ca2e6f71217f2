"""What a fine-tuning run is made of: its configuration, the student it trains (a scratch
BART of `StudentShape`, or a pretrained one, with the user table W_u), the optimizer's
parameter groups, and the `accelerate` process it runs in (alone, or one rank of a DDP group).
`training.finetune` runs the loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from transformers import BartConfig, BartForConditionalGeneration

from explain.tokenizer import PrismTokenizer
from training.modeling import UserAwareBart

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
    device: str = "auto"  # auto | cpu | cuda (the process's GPU under `accelerate launch`)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16 (auto: bf16/fp16 on GPU, no on CPU)
    grad_accum: int = 1  # batches per optimizer step (per process)
    save_every_steps: int = 0  # checkpoint to `last` every N optimizer steps (0: per epoch)
    eval_every_steps: int = 0  # validate every N optimizer steps (0: at each epoch's end)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def make_optimizer(model: UserAwareBart, config: TrainConfig) -> torch.optim.AdamW:
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


def _on_cpu(config: TrainConfig) -> bool:
    return config.device == "cpu" or not torch.cuda.is_available()


def process_state(config: TrainConfig) -> PartialState:
    """This process's place in the run: alone, or one rank of a `torchrun`/`accelerate
    launch` group (read from the environment those set), on the CPU or a GPU."""
    return PartialState(cpu=_on_cpu(config))


def make_accelerator(config: TrainConfig) -> Accelerator:
    """One process, or one of several under `accelerate launch` (DDP); `device` "cpu" keeps
    it on the CPU. Mixed precision "auto": bf16 on a GPU that has it, fp16 on one that does
    not, none on a CPU."""
    cpu = _on_cpu(config)
    precision = config.mixed_precision
    if precision == "auto":
        precision = "no" if cpu else "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:
        return Accelerator(cpu=cpu, mixed_precision=precision)
    except ValueError:
        # accelerate keeps one precision per process. A single process may train with
        # another one later (tests, a notebook): start its state afresh. A distributed run
        # never gets here, as all of its processes share one configuration.
        if process_state(config).num_processes > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, mixed_precision=precision)
