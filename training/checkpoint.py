"""A training run's resumable state, saved as safetensors and JSON, never as pickles.

The optimizer's per-parameter state goes to `optimizer.safetensors`, one tensor per
`<parameter index>.<slot>` key (AdamW's `step`, `exp_avg`, `exp_avg_sq`); the trainer's own
state (epoch, best loss, history, the scheduler's state) goes to `trainer_state.json`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"


def save_state(directory: Path, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in optimizer.state_dict()["state"].items():
        for key, value in slots.items():
            tensors[f"{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_file(
        {k: v.contiguous().cpu() for k, v in tensors.items()},
        str(directory / OPTIMIZER_FILE),
    )
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2))


def load_state(directory: Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    current = optimizer.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        restored.setdefault(int(index), {})[name] = value
    current["state"] = restored
    optimizer.load_state_dict(current)
    return dict(json.loads((directory / STATE_FILE).read_text()))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
