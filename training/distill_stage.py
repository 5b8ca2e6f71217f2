"""The distillation stage: the samples each split sends the teacher (drawn, rewritten as
rankers send them, plus the anonymous copies), then one `distill` run per split in this
process, or one per shard on Ray (`training.distill_ray`)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from training.config import PipelineConfig
from training.data.sparse import sparse_requests
from training.data.types import SPLITS, Dataset, Sample
from training.distill_setup import (
    DistillInputs,
    distill_split,
    make_teacher,
    prompt_budget,
    teacher_template,
)

logger = logging.getLogger(__name__)
ANONYMOUS_SPLIT = "train_anonymous"
ANONYMOUS_USER = "~anonymous"  # never in a user index: the zero vector


def draw_samples(samples: Sequence[Sample], cap: int | None, *, seed: int) -> list[Sample]:
    """`cap` samples drawn at random (seeded), in their original order; all when no cap.

    The head of a dataset is its first users (or its earliest time): a biased subset.
    """
    if cap is None or cap >= len(samples):
        return list(samples)
    chosen = sorted(random.Random(f"draw\x1f{seed}").sample(range(len(samples)), cap))
    return [samples[k] for k in chosen]


def _limit(config: PipelineConfig, split: str) -> int | None:
    return config.max_train_samples if split == "train" else config.eval_samples


def stage_distill(
    config: PipelineConfig, dataset: Dataset, work_dir: Path, progress: bool
) -> dict[str, Any]:
    template = teacher_template(config)
    out: dict[str, Any] = {"teacher": config.teacher, "template": template.template_id}
    jobs: dict[str, list[Sample]] = {}
    for split in SPLITS:
        cap = _limit(config, split)
        if split == "train":
            chosen = draw_samples(dataset.samples[split], cap, seed=config.seed)
        else:  # evaluation keeps its first requests, as every earlier report scored them
            chosen = dataset.samples[split][:cap] if cap else dataset.samples[split]
        # Bare titles, catalogue sort forms and empty histories, as rankers send them
        # (`training.data.sparse`).
        jobs[split] = sparse_requests(
            chosen, alternates=dataset.alternates, enabled=config.request_forms
        )
    if config.anonymous_every:
        # Requests with no known user teach the content-based mode the zero vector serves:
        # without them the zero vector is an input the student never saw in training.
        jobs[ANONYMOUS_SPLIT] = [
            replace(s, user_id=ANONYMOUS_USER) for s in jobs["train"][:: config.anonymous_every]
        ]
    directory = work_dir / "distilled"
    if config.distill_engine == "ray":
        from training.distill_ray import distill_on_ray

        shared = DistillInputs(jobs, dataset.profiles, list(dataset.items.values()))
        out.update(distill_on_ray(config, shared, directory))
        return out
    if config.distill_engine != "local":
        raise ValueError(f"unknown distill engine {config.distill_engine!r} (local, ray)")
    shared = DistillInputs(jobs, dataset.profiles, list(dataset.items.values()))
    teacher = make_teacher(config)  # on Ray each actor builds its own
    budget = prompt_budget(config, teacher)
    out["teacher"] = teacher.name
    for split, samples in jobs.items():
        stats = distill_split(
            config, shared, samples, directory / f"{split}.jsonl", teacher, template, budget,
            progress=progress,
        )  # fmt: skip
        out[split] = stats.summary()
        logger.info("distill %s: %s", split, stats.summary())
    return out
