"""What a distillation run is made of, wherever it runs (this process or a Ray actor): the
teacher and its prompt from the configuration, the inputs every shard shares, and one
`distill` call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from explain.items import Item
from training.config import PipelineConfig
from training.data.types import Sample, UserProfile
from training.distill import DistillStats, distill
from training.prompt_budget import PromptBudget
from training.prompts import PromptTemplate, default_template, load_template
from training.teachers.base import Teacher


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


@dataclass(frozen=True)
class DistillInputs:
    """What every distillation of a run shares: the samples per split, the users' profiles
    and the catalogue (the titles a teacher could invent)."""

    jobs: dict[str, list[Sample]]
    profiles: Mapping[str, UserProfile]
    catalogue: list[Item]


def distill_split(
    config: PipelineConfig,
    shared: DistillInputs,
    samples: Iterable[Sample],
    output: Path,
    teacher: Teacher,
    template: PromptTemplate,
    budget: PromptBudget | None,
    *,
    progress: bool,
) -> DistillStats:
    return distill(
        samples,
        teacher,
        output,
        profiles=shared.profiles,
        template=template,
        prompt_budget=budget,
        input_config=config.input,
        catalogue_titles=shared.catalogue,
        progress=progress,
    )
