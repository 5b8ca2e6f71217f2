"""`prism-train`: the offline pipeline from the command line.

    prism-train build-default                        # the embedded default, offline (make model)
    prism-train run --dataset movielens --data-dir data/raw/ml-1m \\
        --teacher hf:google/flan-t5-xxl --base facebook/bart-base --name prism-ml1m
    prism-train download ml-1m --dest data/raw       # public archives, for users with internet
    prism-train distill --engine ray --workers 4 ...  # distillation only, in shards on Ray
    accelerate launch -m training.cli finetune ...   # fine-tuning only, DDP over the GPUs
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from explain.input_format import InputConfig
from training.config import PipelineConfig, default_config
from training.evaluation import bar_status
from training.finetune_setup import SCRATCH, TrainConfig
from training.pipeline import run_distill, run_finetune, run_pipeline
from training.publish_stage import QualityGateError
from training.work_dir import WorkDirConfigError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="store", help="model store root (default: ./store)")
    parser.add_argument("--name", default="prism-movies", help="model name in the store")
    parser.add_argument("--work-dir", default=None, help="stage outputs (default: runs/<name>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote to production even if a quality bar is missed (the version is always "
        "published; without --force a miss leaves it unpromoted and exits non-zero)",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=None,
        help="train the full student again with the next training seed when a quality bar is "
        "missed, up to this many times in all (default: 3 for build-default, 1 for run)",
    )


def _run_options(run: argparse.ArgumentParser) -> None:
    _common(run)
    run.add_argument("--dataset", choices=["synthetic", "movielens", "yelp"], default="synthetic")
    run.add_argument("--data-dir", default=None, help="folder with the dataset's files")
    run.add_argument("--users", type=int, default=600, help="synthetic users (--dataset synthetic)")
    run.add_argument(
        "--teacher", default="grounded", help="grounded | hf:<model> | openai:<base url>"
    )
    run.add_argument("--teacher-model", default="", help="model name served by an OpenAI endpoint")
    run.add_argument(
        "--teacher-mode",
        choices=["chat", "completions"],
        default="chat",
        help="OpenAI endpoint: chat (/v1/chat/completions) or completions (/v1/completions: "
        "TGI serving FLAN-T5, a base model)",
    )
    run.add_argument(
        "--teacher-concurrency", type=int, default=64, help="requests in flight (OpenAI endpoint)"
    )
    run.add_argument(
        "--teacher-api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable that holds the endpoint's API key",
    )
    run.add_argument(
        "--teacher-tokenizer",
        default=None,
        help="the remote teacher's tokenizer.json (or its folder): prompts are fitted to "
        "--teacher-max-context by dropping the oldest history",
    )
    run.add_argument("--teacher-max-context", type=int, default=512)
    run.add_argument("--teacher-max-new-tokens", type=int, default=64)
    run.add_argument(
        "--prompt-file",
        default=None,
        help="a prompt template with {history} and {item_to_explain} (default: the dataset's)",
    )
    run.add_argument("--base", default=SCRATCH, help="scratch, or e.g. facebook/bart-base")
    run.add_argument("--epochs", type=int, default=3)
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--lr", type=float, default=5e-5)
    run.add_argument("--max-train-samples", type=int, default=None)
    run.add_argument("--eval-samples", type=int, default=800)
    run.add_argument("--max-input-tokens", type=int, default=512)
    run.add_argument(
        "--plain-requests",
        action="store_true",
        help="train on requests as the dataset has them (by default some become bare titles, "
        "catalogue sort forms and cold starts, as rankers send them)",
    )
    run.add_argument("--no-ablation", action="store_true", help="skip the w/o-user model")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda")
    run.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "bf16", "fp16"],
        default="auto",
        help="fine-tuning precision (auto: bf16 on a GPU that has it, fp16 on one that does "
        "not, none on CPU)",
    )
    run.add_argument("--grad-accum", type=int, default=1, help="batches per optimizer step")
    run.add_argument(
        "--save-every-steps", type=int, default=0, help="checkpoint every N steps (0: per epoch)"
    )
    run.add_argument(
        "--eval-every-steps", type=int, default=0, help="validate every N steps (0: per epoch)"
    )
    run.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="distillation in this process, or in shards on Ray Data",
    )
    run.add_argument("--workers", type=int, default=2, help="Ray actors (--engine ray)")
    run.add_argument("--shards", type=int, default=8, help="shards per split (--engine ray)")
    run.add_argument("--ray-address", default=None, help="a Ray cluster (default: a local one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    default = sub.add_parser("build-default", help="build and publish the embedded default model")
    _common(default)
    default.add_argument("--users", type=int, default=None, help="synthetic users (default 500)")
    default.add_argument("--epochs", type=int, default=None)

    run = sub.add_parser(
        "run", help="the whole chain on a dataset, teacher and base of your choice"
    )
    _run_options(run)
    distill = sub.add_parser(
        "distill", help="only the dataset and distillation stages (same options as run)"
    )
    _run_options(distill)
    finetune = sub.add_parser(
        "finetune",
        help="only fine-tuning, after `distill` (one process, or many: accelerate launch)",
    )
    _run_options(finetune)

    export = sub.add_parser(
        "export",
        help="export a published version that has no ONNX graphs, check parity, cache them",
    )
    export.add_argument("target", metavar="NAME[@REF]", help="REF: a version or an alias")
    export.add_argument("--store", default="store", help="model store root (default: ./store)")

    download = sub.add_parser("download", help="fetch a public dataset archive")
    download.add_argument("dataset", help="ml-1m, ml-100k, ml-latest-small, ml-25m, ml-32m or yelp")
    download.add_argument("--dest", default="data/raw")
    return parser


def _config(args: argparse.Namespace) -> PipelineConfig:
    if args.command == "build-default":
        config = default_config(seed=args.seed)
        if args.users:
            config = replace(config, num_users=args.users)
        if args.epochs:
            config = replace(config, train=replace(config.train, epochs=args.epochs))
        if args.attempts:
            config = replace(config, attempts=args.attempts)
        return replace(config, name=args.name, force=args.force)
    return PipelineConfig(
        name=args.name,
        dataset=args.dataset,
        data_dir=args.data_dir,
        num_users=args.users,
        seed=args.seed,
        teacher=args.teacher,
        teacher_model=args.teacher_model,
        teacher_mode=args.teacher_mode,
        teacher_concurrency=args.teacher_concurrency,
        teacher_api_key_env=args.teacher_api_key_env,
        teacher_tokenizer=args.teacher_tokenizer,
        teacher_max_context=args.teacher_max_context,
        teacher_max_new_tokens=args.teacher_max_new_tokens,
        prompt_file=args.prompt_file,
        distill_engine=args.engine,
        distill_workers=args.workers,
        distill_shards=args.shards,
        ray_address=args.ray_address,
        max_train_samples=args.max_train_samples,
        eval_samples=args.eval_samples,
        input=InputConfig(max_input_tokens=args.max_input_tokens),
        train=TrainConfig(
            base=args.base,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            mixed_precision=args.mixed_precision,
            grad_accum=args.grad_accum,
            save_every_steps=args.save_every_steps,
            eval_every_steps=args.eval_every_steps,
        ),
        ablation=not args.no_ablation,
        request_forms=not args.plain_requests,
        force=args.force,
        attempts=args.attempts or 1,
    )


def _shown(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _export(target: str, store_dir: Path) -> int:
    """`prism-train export NAME[@REF]`: what the service runs for a version without graphs."""
    from model_store.store import PRODUCTION, ModelStore, StoreError
    from training.publishing import export_version

    name, _, ref = target.partition("@")
    store = ModelStore(store_dir)
    try:
        version = store.resolve(name, ref or PRODUCTION)
        exported = export_version(store, version)
    except StoreError as exc:
        print(f"prism-train: {exc}", file=sys.stderr)
        return 1
    passed = exported.manifest.parity_passed
    print(f"exported {name}@{exported.version}: parity {'passed' if passed else 'FAILED'}")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "download":
        from training.data.download import main as download_main

        return download_main([args.dataset, "--dest", args.dest])
    if args.command == "export":
        return _export(args.target, Path(args.store))
    config = _config(args)
    work_dir = Path(args.work_dir or Path("runs") / config.name)
    try:
        return _run_command(args, config, work_dir)
    except WorkDirConfigError as exc:
        print(f"prism-train: {exc}", file=sys.stderr)
        return 2


def _run_command(args: argparse.Namespace, config: PipelineConfig, work_dir: Path) -> int:
    """`distill`, `finetune` or a whole build in `work_dir`."""
    started = time.perf_counter()
    if args.command == "distill":
        summary = run_distill(config, work_dir=work_dir, progress=not args.no_progress)
        for key, value in summary.items():
            print(f"  {key}: {value}")
        print(f"distilled into {work_dir / 'distilled'} in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "finetune":
        for key, value in run_finetune(
            config, work_dir=work_dir, progress=not args.no_progress
        ).items():
            print(f"  {key}: best valid loss {value['best_valid_loss']:.4f} -> {value['best_dir']}")
        return 0
    try:
        version, evaluation = run_pipeline(
            config, store_dir=Path(args.store), work_dir=work_dir, progress=not args.no_progress
        )
    except QualityGateError as exc:
        print(f"prism-train: {exc}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - started) / 60
    print(f"\npublished {version.name}@{version.version} in {minutes:.1f} min -> {args.store}")
    for key, bar in evaluation["bars"].items():
        print(f"  {key:32s} {_shown(bar['value']):>10} {bar['bar']:>8}  {bar_status(bar)}")
    for name, variant in version.manifest.variants.items():
        verdict = "servable" if variant.servable else f"not servable: {variant.reason}"
        recipe = f" ({variant.recipe})" if variant.recipe else ""
        print(
            f"  variant {name}{recipe}: {variant.sequences_identical:.2%} of {variant.compared} "
            f"answers identical to fp32, bars {'passed' if variant.bars_passed else 'failed'} "
            f"-> {verdict}"
        )
        for refused in variant.refused:
            print(f"    refused recipe {refused}")
    attempts = evaluation.get("attempts", [])
    if len(attempts) > 1:
        for tried in attempts:
            missed = ", ".join(tried["failed_bars"]) or "none"
            print(f"  training seed {tried['seed']}: bars missed: {missed}")
    print(f"report: {Path(evaluation.get('work_dir', work_dir)) / 'eval' / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
