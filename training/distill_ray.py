"""Distillation on Ray Data: each split's samples in shards, each shard distilled by an actor.

A sample's shard is its id's 64-bit key modulo `distill_shards`, so a rerun cuts the same
shards and every shard resumes its own file. Shard `k` of a split is written to
`<split>.shard-<k>.jsonl` (with its own dropped and items files), in exactly the format a
one-process run writes; readers take a split's shards together
(`training.distill_io.split_files`). Each actor builds its own teacher from the pipeline
configuration (a local model is loaded once per actor, a remote one gets its own client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.config import PipelineConfig
from training.distill_io import id_key, shard_path
from training.distill_setup import (
    DistillInputs,
    distill_split,
    make_teacher,
    prompt_budget,
    teacher_template,
)

logger = logging.getLogger(__name__)


class ShardDistiller:
    """A Ray Data actor: distils the shards it is given, one teacher for all of them."""

    def __init__(self, config: PipelineConfig, shared: list[Any], directory: str) -> None:
        import ray

        self.config = config
        self.inputs: DistillInputs = ray.get(shared[0])  # put once, shared by every actor
        self.directory = Path(directory)
        self.teacher = make_teacher(config)
        self.template = teacher_template(config)
        self.budget = prompt_budget(config, self.teacher)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"split": [], "shard": [], "kept": [], "summary": []}
        for split, shard in zip(batch["split"], batch["shard"], strict=True):
            shards = self.config.distill_shards
            mine = (
                s for s in self.inputs.jobs[str(split)] if id_key(s.sample_id) % shards == shard
            )
            stats = distill_split(
                self.config, self.inputs, mine, shard_path(self.directory, str(split), int(shard)),
                self.teacher, self.template, self.budget, progress=False,
            )  # fmt: skip
            out["split"].append(str(split))
            out["shard"].append(int(shard))
            out["kept"].append(stats.kept)
            out["summary"].append(stats.summary())
        return out


def distill_on_ray(
    config: PipelineConfig, inputs: DistillInputs, directory: Path
) -> dict[str, Any]:
    import ray

    directory.mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=config.ray_address,
            num_cpus=None if config.ray_address else config.distill_workers,
            include_dashboard=False,
            log_to_driver=False,
        )
    try:
        shared = [ray.put(inputs)]
        shards = [
            {"split": split, "shard": k}
            for split in inputs.jobs
            for k in range(config.distill_shards)
        ]
        results = ray.data.from_items(shards).map_batches(
            ShardDistiller,
            fn_constructor_kwargs={
                "config": config,
                "shared": shared,
                "directory": str(directory),
            },
            batch_size=1,
            concurrency=config.distill_workers,
            num_cpus=1,
        )
        out: dict[str, Any] = {}
        for row in results.iter_rows():
            out[f"{row['split']}.shard-{row['shard']}"] = row["summary"]
            logger.info("distill %s shard %s: %s", row["split"], row["shard"], row["summary"])
        return out
    finally:
        if started_here:
            ray.shutdown()
