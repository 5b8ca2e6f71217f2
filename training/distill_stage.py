"""The distillation stage: the teacher and its prompt from the configuration, the samples
each split sends it, and one `distill` run per split."""

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
from training.distill import distill
from training.prompt_budget import PromptBudget
from training.prompts import PromptTemplate, default_template, load_template
from training.teachers.base import Teacher

logger = logging.getLogger(__name__)
ANONYMOUS_SPLIT = "train_anonymous"
ANONYMOUS_USER = "~anonymous"  # never in a user index: the zero vector


def make_teacher(config: PipelineConfig) -> Teacher:
    kind, _, target = config.teacher.partition(":")
    if kind == "grounded":
        from training.teachers.grounded import GroundedTeacher

        return GroundedTeacher(seed=config.seed)
    if kind == "hf" and target:
        from training.teachers.hf import HFTeacher

        return HFTeacher(target, max_new_tokens=config.teacher_max_new_tokens)
    if kind == "openai" and target:
        from training.teachers.openai import MODES, OpenAICompatibleTeacher

        mode = next((m for m in MODES if m == config.teacher_mode), None)
        if mode is None:
            raise ValueError(f"unknown teacher mode {config.teacher_mode!r} ({', '.join(MODES)})")
        return OpenAICompatibleTeacher(
            target,
            config.teacher_model or "default",
            mode=mode,
            concurrency=config.teacher_concurrency,
            api_key_env=config.teacher_api_key_env,
            max_tokens=config.teacher_max_new_tokens,
        )
    raise ValueError(f"unknown teacher {config.teacher!r} (grounded, hf:<model>, openai:<url>)")


def teacher_template(config: PipelineConfig) -> PromptTemplate:
    """`--prompt-file` when given, else the dataset's own default prompt."""
    if config.prompt_file:
        return load_template(Path(config.prompt_file))
    return default_template(config.dataset)


def prompt_budget(config: PipelineConfig, teacher: Teacher) -> PromptBudget | None:
    """The remote teacher's budget from its tokenizer file, or the local teacher's own."""
    if config.teacher_tokenizer:
        return PromptBudget.from_tokenizer_file(
            Path(config.teacher_tokenizer),
            max_context=config.teacher_max_context,
            max_new_tokens=config.teacher_max_new_tokens,
        )
    own = getattr(teacher, "prompt_budget", None)
    return own if isinstance(own, PromptBudget) else None


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
    teacher = make_teacher(config)
    template = teacher_template(config)
    budget = prompt_budget(config, teacher)
    out: dict[str, Any] = {
        "teacher": getattr(teacher, "name", config.teacher),
        "template": template.template_id,
    }
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
    for split, samples in jobs.items():
        stats = distill(
            samples,
            teacher,
            work_dir / "distilled" / f"{split}.jsonl",
            profiles=dataset.profiles,
            template=template,
            prompt_budget=budget,
            input_config=config.input,
            catalogue_titles=list(dataset.items.values()),
            progress=progress,
        )
        out[split] = stats.summary()
        logger.info("distill %s: %s", split, stats.summary())
    return out
