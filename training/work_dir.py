"""A work directory belongs to one configuration: a resumed build is the build that made it.

Every stage of `training.pipeline` leaves a marker (`<stage>.done.json`) and a resumed build
reads a finished stage back instead of running it again; distillation also resumes from its
partial shard files and fine-tuning from its last checkpoint. None of them records the
configuration it ran with, so a build resumed with another one (a new training recipe, a
different teacher or dataset) used to mix the two silently: data distilled by one teacher,
a student trained by the old recipe, published under the new one.

`claim_work_dir` compares the configuration a build starts with against the one the
directory was made with (`config.json`) and refuses, naming the fields, when a field that a
finished stage depends on differs. Stages depend on fields by level: the data stages
(`dataset`, `distill`) on the data and teacher fields, the training stages (`tokenizer`,
`finetune_*`) on those and `train.*` and `vocab_size`, the rest (`evaluate`, `publish`) on
every field; so `prism-train distill` with one training recipe and `prism-train finetune`
with another is a build, and a different teacher after distillation is not. Fields that only
change how the build runs (`EXECUTION_ONLY`: concurrency, workers, devices, checkpoint
cadence, promotion) may always differ. A field the saved configuration does not have
(written by an older version) is not compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.config import PipelineConfig

CONFIG_FILE = "config.json"
EXECUTION_ONLY = frozenset(
    {
        "teacher_concurrency",
        "teacher_api_key_env",
        "distill_engine",
        "distill_workers",
        "distill_shards",
        "ray_address",
        "force",
        "attempts",
        "train.device",
        "train.threads",
        "train.save_every_steps",
    }
)


# The levels: what the data stages read, what training adds, what evaluation and publishing add.
DATA, TRAINING, EVERYTHING = 0, 1, 2
STAGE_LEVELS = {"dataset": DATA, "distill": DATA, "tokenizer": TRAINING}  # others: by prefix
TRAINING_FIELDS = ("train.", "vocab_size")
EVALUATION_FIELDS = frozenset(
    {"name", "eval_samples", "base_eval_samples", "max_new_tokens", "ablation"}
)


def stage_level(stage: str) -> int:
    """The level of the fields stage `stage` (a marker's name) depends on."""
    if stage in STAGE_LEVELS:
        return STAGE_LEVELS[stage]
    return TRAINING if stage.startswith("finetune") else EVERYTHING


def field_level(name: str) -> int:
    """The first level whose stages read field `name` (dotted)."""
    if name in EVALUATION_FIELDS:
        return EVERYTHING
    return TRAINING if name.startswith(TRAINING_FIELDS) else DATA


class WorkDirConfigError(ValueError):
    """The work directory holds stages built with another configuration."""


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_fields(
    saved: Mapping[str, Any], current: Mapping[str, Any], level: int = EVERYTHING
) -> list[str]:
    """The result-changing fields, dotted, that stages up to `level` read and whose values
    differ (of those `saved` has)."""
    before, now = flatten(saved), flatten(current)
    return sorted(
        name
        for name in before.keys() & now.keys()
        if name not in EXECUTION_ONLY and field_level(name) <= level and before[name] != now[name]
    )


def _as_json(config: PipelineConfig) -> dict[str, Any]:
    """The configuration as `config.json` holds it (paths and enums as strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(config.to_dict(), default=str))
    return loaded


def claim_work_dir(config: PipelineConfig, work_dir: Path, *, write: bool = True) -> None:
    """Refuse `work_dir` if a stage in it finished under another configuration; else record
    `config` there (`write`: False for processes that only read, such as DDP's workers)."""
    saved_file = work_dir / CONFIG_FILE
    current = _as_json(config)
    finished = [m.name.removesuffix(".done.json") for m in work_dir.glob("*.done.json")]
    if saved_file.exists() and finished:
        recorded = json.loads(saved_file.read_text())
        level = max(stage_level(stage) for stage in finished)
        changed = changed_fields(recorded, current, level)
        if changed:
            saved, now = flatten(recorded), flatten(current)
            shown = "; ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed[:8])
            more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
            raise WorkDirConfigError(
                f"{work_dir} holds stages built with another configuration ({shown}{more}). "
                f"Build in a new directory (--work-dir) or delete {work_dir} to start again; "
                "resuming would mix the two."
            )
    if write:
        work_dir.mkdir(parents=True, exist_ok=True)
        saved_file.write_text(json.dumps(current, indent=2))
