"""The pipeline's evaluation stage: generate with every system, score, report, check the bars."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from explain.explainer import DecodeSettings, Explainer
from explain.items import Item
from explain.types import ExplainJob, Explanation
from explain.users import UserTable
from training.data.types import Dataset
from training.distill_io import iter_split
from training.evaluation import (
    SystemOutput,
    bar_status,
    check_bars,
    from_explanations,
    from_teacher,
    manifest_eval,
    score_system,
    write_evaluation,
)
from training.faithfulness import TitleMatcher
from training.finetune_setup import build_student, pick_device
from training.messy import describe, messy_requests
from training.messy_eval import run_messy, score_messy
from training.modeling import UserAwareBart
from training.records import DistilledRecord
from training.torch_backend import torch_explainer
from training.variants import VariantCheck

if TYPE_CHECKING:
    from training.config import PipelineConfig

logger = logging.getLogger(__name__)

# The paper's case study (Table 5): history -> recommended item.
CASE_STUDIES = (
    (("E.T. the Extra-Terrestrial", "Star Wars", "The Thing"), "Back to the Future"),
    (("Animal House", "Caddyshack"), "American Pie"),
    (("Ferris Bueller's Day Off",), "Sixteen Candles"),
)


def _by_title(dataset: Dataset) -> dict[str, Item]:
    return {item.display_title.lower(): item for item in dataset.items.values()}


def case_study_requests(dataset: Dataset) -> list[tuple[list[Item], Item]]:
    titles = _by_title(dataset)
    out = []
    for history, item in CASE_STUDIES:
        found = [titles[t.lower()] for t in (*history, item) if t.lower() in titles]
        if len(found) == len(history) + 1:
            out.append((found[:-1], found[-1]))
    return out


# An id no user table holds: the zero vector, as the service gives an unknown user.
UNKNOWN_USER = "~unknown"


def _case_studies(explainer: Explainer, dataset: Dataset) -> list[dict[str, str]]:
    users: dict[str, str] = {}
    for user_id, profile in sorted(dataset.profiles.items()):
        if user_id in dataset.user_index:
            users.setdefault(profile.aspect, user_id)
    rows = []
    for history, item in case_study_requests(dataset):
        for label, user_id in [
            ("unknown user", UNKNOWN_USER),
            *((f"user preferring {a}", u) for a, u in sorted(users.items())),
        ]:
            (explanation,) = explainer.explain([ExplainJob(user_id, tuple(history), item)])
            rows.append(
                {
                    "history": ", ".join(h.display_title for h in history),
                    "item": item.display_title,
                    "user": label,
                    "explanation": explanation.text,
                }
            )
    return rows


def _jobs(records: Sequence[DistilledRecord], *, zero_vector: bool = False) -> list[ExplainJob]:
    return [r.job(UNKNOWN_USER if zero_vector else None) for r in records]


def stage_evaluate(
    config: PipelineConfig,
    dataset: Dataset,
    work_dir: Path,
    timings: Mapping[str, float],
    stats: Mapping[str, Any],
    full_summary: Mapping[str, Any],
    *,
    progress: bool,
) -> dict[str, Any]:
    device = pick_device(config.train.device)
    records = list(islice(iter_split(work_dir / "distilled", "test"), config.eval_samples))
    references = [r.text for r in records]
    matcher = TitleMatcher(dataset.items.values())
    features = {f for item in dataset.items.values() for f in item.features}
    best_dir = work_dir / "full" / "best"
    # The service's decode settings, except the token limit the pipeline evaluates at.
    decode = DecodeSettings(max_new_tokens=config.max_new_tokens)
    model = UserAwareBart.load(best_dir, device=device)
    full = torch_explainer(best_dir, model=model, input_config=config.input, decode=decode)
    tokenizer = full.tokenizer

    def scored(
        output: SystemOutput, subset: Sequence[DistilledRecord], refs: Sequence[str] | None
    ) -> dict[str, Any]:
        return score_system(
            output,
            subset,
            references=refs,
            matcher=matcher,
            profiles=dataset.profiles,
            features=features,
        )

    def student(explainer: Explainer, jobs: Sequence[ExplainJob], desc: str) -> SystemOutput:
        with tqdm(total=len(jobs), desc=desc, disable=not progress, unit="request") as bar:
            return from_explanations(explainer.explain_all(jobs, progress=bar.update))

    systems: dict[str, dict[str, Any]] = {}
    systems["Prism (full)"] = scored(student(full, _jobs(records), "full"), records, references)
    systems["Prism (zero vector)"] = scored(
        student(full, _jobs(records, zero_vector=True), "zero vector"), records, references
    )
    unbanned = torch_explainer(
        best_dir,
        model=model,
        input_config=config.input,
        decode=decode,
        ban_unfillable=False,
    )
    systems["Prism (no slot ban)"] = scored(
        student(unbanned, _jobs(records), "no slot ban"), records, references
    )
    if (work_dir / "no_user" / "best").exists():
        no_user = torch_explainer(
            work_dir / "no_user" / "best", input_config=config.input, decode=decode, device=device
        )
        systems["Prism w/o user"] = scored(
            student(no_user, _jobs(records, zero_vector=True), "w/o user"), records, references
        )
    base_records = records[: config.base_eval_samples]
    torch.manual_seed(config.seed)
    base = (
        build_student(
            config.train.base,
            tokenizer,
            max(dataset.user_index.values(), default=0),
            config.train.shape,
            use_users=True,
        )
        .to(device)
        .eval()
    )
    # The untrained base decodes with its own (random) user vectors, not the trained ones.
    base_users = UserTable(
        dict(dataset.user_index),
        np.asarray(base.user_embeddings.weight.detach().cpu().numpy(), dtype=np.float32),
    )
    base_explainer = torch_explainer(
        best_dir,
        model=base,
        users=base_users,
        input_config=config.input,
        decode=DecodeSettings(max_new_tokens=32),
    )
    systems["untrained base"] = scored(
        student(base_explainer, _jobs(base_records), "untrained base"),
        base_records,
        references[: len(base_records)],
    )
    systems["teacher"] = scored(from_teacher(records, tokenizer, config.input), records, None)
    # Requests as real catalogues send them, answered as the service answers them.
    jobs = messy_requests(dataset.items, dataset.alternates)
    with tqdm(total=len(jobs), desc="messy", disable=not progress, unit="request") as bar:
        messy, messy_rows = run_messy(full, jobs, matcher, progress=bar.update)
    eval_metrics = manifest_eval(systems, messy)
    bars = check_bars(eval_metrics)
    cases = _case_studies(full, dataset)
    train, shape = config.train, config.train.shape
    setup = {
        "dataset": f"{dataset.name}: {stats.get('train_samples')} train / "
        f"{stats.get('valid_samples')} valid / {stats.get('test_samples')} test samples, "
        f"{stats.get('users')} users",
        "teacher": config.teacher,
        "student": f"{full_summary.get('parameters', 0) / 1e6:.2f}M parameters, base {train.base}, "
        f"d_model {shape.d_model}, {shape.layers}+{shape.layers} layers, ffn {shape.ffn}",
        "training": f"{train.epochs} epochs, batch {train.batch_size}, lr {train.lr}, "
        f"best epoch {full_summary.get('best_epoch')}",
        "input": f"max_history {config.input.max_history}, "
        f"max_input_tokens {config.input.max_input_tokens}",
        "decoding": f"greedy, max_new_tokens {config.max_new_tokens}, unfillable slots banned; "
        f"a second pass (beam {decode.candidates}, n-best) when the verifier refuses the first",
        "evaluated": f"{len(records)} test requests ({len(base_records)} for the untrained base)",
        "seed": f"{config.seed} (data and teacher), {train.seed} (training)",
        "stage seconds": ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
        "messy requests": describe(jobs),
        "quality bars": ", ".join(f"{k} {v['bar']}: {bar_status(v)}" for k, v in bars.items()),
    }
    write_evaluation(
        work_dir / "eval",
        systems,
        setup=setup,
        case_studies=cases,
        messy=messy,
        messy_examples=messy_rows,
    )
    for key, bar in bars.items():
        logger.info("bar %s: %s (%s) %s", key, bar["value"], bar["bar"], bar_status(bar))
    return {
        "systems": systems,
        "manifest_eval": eval_metrics,
        "bars": bars,
        "case_studies": cases,
        "messy": messy,
    }


def variant_check(
    config: PipelineConfig, dataset: Dataset, work_dir: Path, systems: Mapping[str, Any]
) -> VariantCheck:
    """What a precision variant is judged on (`training.variants`): the evaluation's test
    requests, for their users and for the zero vector, and its messy requests; its quality
    bars are those of the evaluation with the variant's answers in place of fp32's (the
    teacher, the ablation and the untrained base are the evaluation's own figures)."""
    records = list(islice(iter_split(work_dir / "distilled", "test"), config.eval_samples))
    references = [r.text for r in records]
    matcher = TitleMatcher(dataset.items.values())
    features = {f for item in dataset.items.values() for f in item.features}
    messy_jobs = messy_requests(dataset.items, dataset.alternates)
    full, zero = _jobs(records), _jobs(records, zero_vector=True)

    def bars(answers: Sequence[Explanation]) -> dict[str, dict[str, Any]]:
        n = len(records)
        scored = dict(systems)
        for label, part in (
            ("Prism (full)", answers[:n]),
            ("Prism (zero vector)", answers[n : 2 * n]),
        ):
            scored[label] = score_system(
                from_explanations(part),
                records,
                references=references,
                matcher=matcher,
                profiles=dataset.profiles,
                features=features,
            )
        messy = score_messy(messy_jobs, answers[2 * n :], matcher)
        return check_bars(manifest_eval(scored, messy))

    return VariantCheck([*full, *zero, *messy_jobs], bars)
