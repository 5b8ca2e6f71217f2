"""The pipeline's evaluation stage: generate with every system, score, report, check the bars."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model_store.items import Item
from model_store.modeling import PrismMeta, UserAwareBart
from model_store.tokenizer import PrismTokenizer
from training.data.types import Dataset
from training.distill import read_distilled
from training.evaluation import (
    SystemOutput,
    check_bars,
    from_predictions,
    from_teacher,
    manifest_eval,
    score_system,
    write_evaluation,
)
from training.faithfulness import TitleMatcher
from training.finetune import build_student, pick_device
from training.predict import predict

if TYPE_CHECKING:
    from training.pipeline import PipelineConfig

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


def _case_studies(
    model: UserAwareBart,
    dataset: Dataset,
    tokenizer: PrismTokenizer,
    config: PipelineConfig,
    generation: Mapping[str, Any],
) -> list[dict[str, str]]:
    users: dict[str, str] = {}
    for user_id, profile in sorted(dataset.profiles.items()):
        if user_id in dataset.user_index:
            users.setdefault(profile.aspect, user_id)
    rows = []
    for history, item in case_study_requests(dataset):
        record = {"history": [h.to_dict() for h in history], "item": item.to_dict()}
        for label, user_id in [
            ("unknown user", "__unknown__"),
            *((f"user preferring {a}", u) for a, u in sorted(users.items())),
        ]:
            (prediction,) = predict(
                model,
                [{**record, "user_id": user_id}],
                tokenizer=tokenizer,
                input_config=config.input,
                generation=generation,
                user_rows=dataset.user_index,
                max_new_tokens=config.max_new_tokens,
            )
            rows.append(
                {
                    "history": ", ".join(h.display_title for h in history),
                    "item": item.display_title,
                    "user": label,
                    "explanation": prediction.text,
                }
            )
    return rows


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
    tokenizer = PrismTokenizer.from_file(work_dir / "tokenizer")
    records = read_distilled(work_dir / "distilled" / "test.jsonl")[: config.eval_samples]
    references = [str(r["text"]) for r in records]
    matcher = TitleMatcher(dataset.items.values())
    features = {f for item in dataset.items.values() for f in item.features}
    full = UserAwareBart.load(work_dir / "full" / "best", device=device)
    generation = PrismMeta.load(work_dir / "full" / "best").generation
    common = {
        "serve_fallback": False,
        "tokenizer": tokenizer,
        "input_config": config.input,
        "generation": generation,
        "max_new_tokens": config.max_new_tokens,
        "progress": progress,
    }

    def scored(
        output: SystemOutput, subset: Sequence[Mapping[str, Any]], refs: Sequence[str] | None
    ) -> dict[str, Any]:
        return score_system(
            output,
            subset,
            references=refs,
            matcher=matcher,
            profiles=dataset.profiles,
            features=features,
        )

    def student(
        model: UserAwareBart, subset: Sequence[Mapping[str, Any]], desc: str, **kwargs: Any
    ) -> SystemOutput:
        predictions = predict(model, subset, desc=desc, **{**common, **kwargs})
        return from_predictions(predictions, subset, tokenizer, config.input)

    systems: dict[str, dict[str, Any]] = {}
    systems["Prism (full)"] = scored(
        student(full, records, "full", user_rows=dataset.user_index), records, references
    )
    systems["Prism (zero vector)"] = scored(
        student(full, records, "zero vector", user_rows=None), records, references
    )
    systems["Prism (no slot ban)"] = scored(
        student(full, records, "no slot ban", user_rows=dataset.user_index, ban_unfillable=False),
        records,
        references,
    )
    if (work_dir / "no_user" / "best").exists():
        no_user = UserAwareBart.load(work_dir / "no_user" / "best", device=device)
        systems["Prism w/o user"] = scored(
            student(no_user, records, "w/o user", user_rows=None), records, references
        )
    base_records = records[: config.base_eval_samples]
    torch.manual_seed(config.seed)
    base = build_student(
        config.train.base,
        tokenizer,
        max(dataset.user_index.values(), default=0),
        config.train.shape,
        use_users=True,
    )
    systems["untrained base"] = scored(
        student(
            base.to(device).eval(),
            base_records,
            "untrained base",
            user_rows=dataset.user_index,
            max_new_tokens=32,
        ),
        base_records,
        references[: len(base_records)],
    )
    systems["teacher"] = scored(from_teacher(records, tokenizer, config.input), records, None)
    eval_metrics = manifest_eval(systems)
    bars = check_bars(eval_metrics)
    cases = _case_studies(full, dataset, tokenizer, config, generation)
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
        "decoding": f"greedy, max_new_tokens {config.max_new_tokens}, unfillable slots banned",
        "evaluated": f"{len(records)} test requests ({len(base_records)} for the untrained base)",
        "seed": config.seed,
        "stage seconds": ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
        "quality bars": ", ".join(
            f"{k} {v['bar']}: {'pass' if v['passed'] else 'FAIL'}" for k, v in bars.items()
        ),
    }
    write_evaluation(work_dir / "eval", systems, setup=setup, case_studies=cases)
    for key, bar in bars.items():
        logger.info(
            "bar %s: %s (%s) %s", key, bar["value"], bar["bar"], "pass" if bar["passed"] else "FAIL"
        )
    return {"systems": systems, "manifest_eval": eval_metrics, "bars": bars, "case_studies": cases}
