"""The whole offline chain: data -> Oracle distillation -> student fine-tuning -> evaluation ->
publish (ONNX export + parity) -> promote.

Every stage writes under `work_dir` and leaves a `<stage>.done.json` marker, so an
interrupted run continues where it stopped: distillation resumes its JSONL, fine-tuning its
last epoch, and finished stages are not run again. `build_default` is this chain with the
project's own sample catalogue, synthetic users and the built-in grounded teacher.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from explain.tokenizer import PrismTokenizer
from explain.verifier import save_inventory
from model_store.store import PRODUCTION, ModelStore
from model_store.version import ModelVersion
from training import tokenization
from training.config import PipelineConfig
from training.data.types import Dataset
from training.distill_io import iter_split
from training.distill_stage import ANONYMOUS_SPLIT, stage_distill
from training.finetune import train_student
from training.finetune_setup import SCRATCH
from training.publish_stage import QualityGateError, published_version, stage_publish
from training.work_dir import claim_work_dir

logger = logging.getLogger(__name__)


class Stages:
    """Runs each stage once; a finished stage's summary is read back instead of re-run."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.timings: dict[str, float] = {}
        work_dir.mkdir(parents=True, exist_ok=True)

    def run(
        self, name: str, action: Callable[[], Mapping[str, Any]], *, record: bool = True
    ) -> dict[str, Any]:
        """`record=False`: run it but leave the marker to another process (DDP's main)."""
        marker = self.work_dir / f"{name}.done.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            self.timings[name] = float(done.get("seconds", 0.0))
            logger.info("stage %s: already done", name)
            return dict(done["summary"])
        logger.info("stage %s: running", name)
        start = time.perf_counter()
        summary = dict(action())
        seconds = time.perf_counter() - start
        self.timings[name] = seconds
        if record:
            marker.write_text(
                json.dumps({"seconds": seconds, "summary": summary}, indent=2, default=str)
            )
        return summary


def load_dataset(config: PipelineConfig) -> Dataset:
    if config.dataset == "synthetic":
        from training.data.synthetic import build_synthetic_dataset

        return build_synthetic_dataset(
            num_users=config.num_users, seed=config.seed, max_history=config.input.max_history
        )
    if config.data_dir is None:
        raise ValueError(f"dataset {config.dataset!r} needs --data-dir")
    if config.dataset == "movielens":
        from training.data.movielens import load_movielens

        return load_movielens(Path(config.data_dir), max_history=config.input.max_history)
    if config.dataset == "yelp":
        from training.data.yelp import load_yelp_dataset

        return load_yelp_dataset(Path(config.data_dir), max_history=config.input.max_history)
    raise ValueError(f"unknown dataset {config.dataset!r} (synthetic, movielens, yelp)")


def stage_tokenizer(config: PipelineConfig, work_dir: Path) -> dict[str, Any]:
    target = work_dir / "tokenizer"
    target.mkdir(parents=True, exist_ok=True)
    if config.train.base == SCRATCH:
        from explain.input_format import build_input
        from training.distill import WordCountEncoder

        wide = replace(config.input, max_input_tokens=100_000)

        def texts() -> Iterator[str]:  # streamed: the records are never all in memory
            for r in iter_split(work_dir / "distilled", "train"):
                yield build_input(list(r.history), r.item, WordCountEncoder(), wide).text
                yield r.text

        tokenizer = tokenization.train_bpe(texts(), vocab_size=config.vocab_size)
    else:
        tokenizer = tokenization.from_pretrained(config.train.base)
    tokenizer.backend.save(str(target / "tokenizer.json"))
    return {"vocab_size": tokenizer.vocab_size}


def encode_examples(
    config: PipelineConfig, work_dir: Path, tokenizer: PrismTokenizer, *, progress: bool
) -> None:
    """The train and valid examples as Arrow files, unless they are there already.

    Encoding re-delexicalises every target against the student's window: done once, shared
    by the full and the w/o-user model (and by every process of a distributed run).
    """
    from training.encoded import write_encoded

    for split in ("train", "valid"):
        encoded = work_dir / "examples" / f"{split}.arrow"
        if encoded.exists():
            continue
        splits = [split, ANONYMOUS_SPLIT] if split == "train" else [split]
        write_encoded(
            (r for name in splits for r in iter_split(work_dir / "distilled", name)),
            tokenizer,
            config.input,
            encoded,
            max_target_tokens=config.train.max_target_tokens,
            progress=progress,
        )


def stage_finetune(
    config: PipelineConfig, dataset: Dataset, work_dir: Path, *, use_users: bool, progress: bool
) -> dict[str, Any]:
    from accelerate import PartialState

    from training.encoded import EncodedExamples, load_encoded

    tokenizer = PrismTokenizer.from_file(work_dir / "tokenizer")
    train_config = replace(config.train, use_users=use_users)
    encode_examples(config, work_dir, tokenizer, progress=progress)
    examples = {
        split: EncodedExamples(
            load_encoded(work_dir / "examples" / f"{split}.arrow"),
            dataset.user_index,
            use_users=use_users,
        )
        for split in ("train", "valid")
    }
    result = train_student(
        examples["train"],
        examples["valid"],
        tokenizer=tokenizer,
        user_rows=dataset.user_index,
        input_config=config.input,
        config=train_config,
        out_dir=work_dir / ("full" if use_users else "no_user"),
        progress=progress,
        extra_meta={
            "dataset": dataset.name,
            "teacher": config.teacher,
            "pipeline": config.to_dict(),
        },
    )
    # The sentences the teacher wrote, as the decoder writes them back: the verifier serves
    # no sentence outside this inventory (a recombination of fragments is not in it).
    targets = {tokenizer.decode(e.labels) for split in examples.values() for e in split}
    sentences = save_inventory(result.best_dir, targets) if PartialState().is_main_process else 0
    return {
        "best_dir": str(result.best_dir),
        "inventory_sentences": sentences,
        "best_epoch": result.best_epoch,
        "best_valid_loss": result.best_valid_loss,
        "history": result.history,
        "seconds": result.seconds,
        "parameters": result.parameters,
        "train_examples": len(examples["train"]),
    }


def run_distill(config: PipelineConfig, *, work_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Only the dataset and distillation stages (`prism-train distill`)."""
    claim_work_dir(config, work_dir)
    stages = Stages(work_dir)
    dataset = load_dataset(config)
    stages.run("dataset", lambda: _dataset_summary(dataset))
    return stages.run("distill", lambda: stage_distill(config, dataset, work_dir, progress))


def run_finetune(
    config: PipelineConfig, *, work_dir: Path, progress: bool = True
) -> dict[str, Any]:
    """Only fine-tuning, on a work dir whose distillation is done (`prism-train finetune`).

    Under `accelerate launch` every process runs this: the main one trains the tokenizer and
    writes the encoded examples and the stage markers, then all of them train (DDP).
    """
    from training.finetune_setup import process_state

    state = process_state(config.train)
    if not (work_dir / "distill.done.json").exists():
        raise ValueError(f"{work_dir}: no finished distillation (run `prism-train distill`)")
    claim_work_dir(config, work_dir, write=state.is_main_process)
    dataset = load_dataset(config)
    stages = Stages(work_dir)
    if state.is_main_process:
        stages.run("tokenizer", lambda: stage_tokenizer(config, work_dir))
        encode_examples(
            config, work_dir, PrismTokenizer.from_file(work_dir / "tokenizer"), progress=progress
        )
    state.wait_for_everyone()
    out = {}
    for use_users in (True, False) if config.ablation else (True,):
        name = "finetune_full" if use_users else "finetune_no_user"
        out[name] = stages.run(
            name,
            lambda use_users=use_users: stage_finetune(  # type: ignore[misc]
                config, dataset, work_dir, use_users=use_users, progress=progress
            ),
            record=state.is_main_process,
        )
        state.wait_for_everyone()
    return out


# What every training attempt shares with the first: the data, the tokenizer, the encoded
# examples and the w/o-user ablation (the fixed baseline the aspect gap is measured against).
SHARED_OUTPUTS = ("distilled", "tokenizer", "examples", "no_user")
SHARED_STAGES = ("finetune_no_user",)


def attempt_dir(work_dir: Path, attempt: int, seed: int) -> Path:
    """Where a training attempt's student and evaluation live: the work dir itself for the
    first, `seed-<n>/` for a retry, which links what the attempts share instead of copying."""
    if attempt == 0:
        return work_dir
    path = work_dir / f"seed-{seed}"
    path.mkdir(parents=True, exist_ok=True)
    for name in SHARED_OUTPUTS:
        link = path / name
        if not link.exists() and (work_dir / name).exists():
            link.symlink_to((work_dir / name).resolve(), target_is_directory=True)
    for stage in SHARED_STAGES:
        marker = work_dir / f"{stage}.done.json"
        if marker.exists() and not (path / marker.name).exists():
            shutil.copyfile(marker, path / marker.name)
    return path


def _train_and_evaluate(
    config: PipelineConfig,
    dataset: Dataset,
    stages: Stages,
    stats: Mapping[str, Any],
    progress: bool,
) -> dict[str, Any]:
    """One training attempt in `stages.work_dir`: the full student, the ablation, the
    evaluation (each a stage, read back when an earlier run finished it)."""
    from training.evaluate_stage import stage_evaluate
    from training.evaluation import check_bars

    where = stages.work_dir
    full = stages.run(
        "finetune_full",
        lambda: stage_finetune(config, dataset, where, use_users=True, progress=progress),
    )
    if config.ablation:
        stages.run(
            "finetune_no_user",
            lambda: stage_finetune(config, dataset, where, use_users=False, progress=progress),
        )
    evaluation = stages.run(
        "evaluate",
        lambda: stage_evaluate(
            config, dataset, where, stages.timings, stats, full, progress=progress
        ),
    )
    # The verdicts follow today's bars, also for an evaluation a run before them recorded.
    return {**evaluation, "bars": check_bars(evaluation["manifest_eval"])}


def _failed_bars(evaluation: Mapping[str, Any]) -> list[str]:
    return [k for k, v in evaluation["bars"].items() if v["passed"] is False]


def run_pipeline(
    config: PipelineConfig, *, store_dir: Path, work_dir: Path, progress: bool = True
) -> tuple[ModelVersion, dict[str, Any]]:
    """Run (or resume) every stage; returns the published version and the evaluation.

    The data, the teacher's targets, the tokenizer and the w/o-user ablation are made once.
    The full student is trained and evaluated up to `config.attempts` times, with training
    seeds `train.seed`, +1, ..., stopping at the first whose evaluation meets every quality
    bar; that one is published (if none did: the one that missed the fewest bars, the
    earliest on a tie, unpromoted). Each attempt is a stage set of its own, so a resumed
    build reuses every finished attempt.
    """
    started = time.perf_counter()
    claim_work_dir(config, work_dir)
    stages = Stages(work_dir)
    dataset = load_dataset(config)
    stats = stages.run("dataset", lambda: _dataset_summary(dataset))
    stages.run("distill", lambda: stage_distill(config, dataset, work_dir, progress))
    stages.run("tokenizer", lambda: stage_tokenizer(config, work_dir))
    tried: list[tuple[PipelineConfig, Path, dict[str, Any]]] = []
    for attempt in range(max(config.attempts, 1)):
        seed = config.train.seed + attempt
        attempt_config = replace(config, train=replace(config.train, seed=seed))
        where = attempt_dir(work_dir, attempt, seed)
        run = stages if attempt == 0 else Stages(where)
        evaluation = _train_and_evaluate(attempt_config, dataset, run, stats, progress)
        if attempt:
            stages.timings.update({f"{k} (seed {seed})": v for k, v in run.timings.items()})
        tried.append((attempt_config, where, evaluation))
        failed = _failed_bars(evaluation)
        if not failed or config.force:
            break
        logger.warning(
            "training seed %d missed %s%s",
            seed,
            ", ".join(failed),
            f"; training again with seed {seed + 1}" if attempt + 1 < config.attempts else "",
        )
    chosen_config, chosen_dir, evaluation = min(tried, key=lambda t: len(_failed_bars(t[2])))
    evaluation = {
        **evaluation,
        "training_seed": chosen_config.train.seed,
        "attempts": [{"seed": c.train.seed, "failed_bars": _failed_bars(e)} for c, _, e in tried],
    }
    version = published_version(chosen_config, store_dir, chosen_dir) or stage_publish(
        chosen_config, store_dir, chosen_dir, evaluation, dataset
    )
    marker_path = chosen_dir / "publish.done.json"
    if not json.loads(marker_path.read_text())["promoted"]:  # a resumed run: gate missed
        if not config.force:
            raise QualityGateError(
                f"{config.name}@{version.version} is published but not promoted: it missed a "
                "quality bar (see the report; --force promotes it anyway)"
            )
        ModelStore(store_dir).set_alias(config.name, PRODUCTION, version.version)
        marker_path.write_text(json.dumps({"version": version.version, "promoted": True}))
    total = time.perf_counter() - started
    logger.info("pipeline finished in %.0f s: %s@%s", total, version.name, version.version)
    return version, {**evaluation, "timings": stages.timings, "work_dir": str(chosen_dir)}


def _dataset_summary(dataset: Dataset) -> dict[str, Any]:
    from training.data.sequences import dataset_stats

    summary = dict(dataset_stats(dataset))
    if len(dataset.skipped):
        logger.warning(dataset.skipped.summary())
    return summary
