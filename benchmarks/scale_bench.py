"""Distillation at the paper's scale: 894,752 samples with 50-item histories, on this machine.

    python -m benchmarks.scale_bench [--samples 894752] [--work /tmp/prism-scale]

The samples are synthetic (the project's 642-film catalogue, seeded random histories of 50
films, 25 samples per user) and streamed, never held. Three stages, each its own process so
its peak RSS is its own:

1. distill: every sample through the built-in grounded teacher into the streaming record
   format; the process kills itself with SIGKILL once half the samples are answered (a crash:
   nothing flushed, nothing closed).
2. resume: the same call again. It reads the done ids (not the records), skips what is done
   and distils the rest; `resume` is the time from its start to its first new answer.
3. encode: a BPE tokenizer trained on the first 20,000 records, then every record encoded
   to the memory-mapped Arrow file the fine-tuning reads.

Prints a table and, last, one line: `scale: N samples; peak RSS M MB; distill S s; ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
PER_USER = 25
HISTORY = 50


def samples(count: int, seed: int = 0) -> Iterator[Any]:
    from training.data.catalog import load_catalog
    from training.data.types import Sample

    films = list(load_catalog().values())
    for k in range(count):
        rng = random.Random(f"{seed}\x1f{k}")
        chosen = rng.sample(films, HISTORY + 1)
        yield Sample(f"u{k // PER_USER}", tuple(chosen[:HISTORY]), chosen[HISTORY], k)


class Crashing:
    """The grounded teacher, timed; it kills its own process after `crash_after` answers."""

    def __init__(self, crash_after: int | None) -> None:
        from training.teachers.grounded import GroundedTeacher

        self.inner = GroundedTeacher()
        self.crash_after = crash_after
        self.answered = 0
        self.first_answer: float | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def last_aspects(self) -> list[Any]:
        return list(self.inner.last_aspects)

    @property
    def last_templates(self) -> list[str]:
        return self.inner.last_templates

    def explain(self, requests: Sequence[Any]) -> list[Any]:
        if self.first_answer is None:
            self.first_answer = time.perf_counter()
        if self.crash_after is not None and self.answered >= self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        self.answered += len(requests)
        return self.inner.explain(requests)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_distill(work: Path, count: int, crash_after: int | None) -> dict[str, Any]:
    from explain.input_format import InputConfig
    from training.data.catalog import load_catalog
    from training.distill import distill

    started = time.perf_counter()
    teacher = Crashing(crash_after)
    stats = distill(
        samples(count),
        teacher,
        work / "train.jsonl",
        input_config=InputConfig(max_history=HISTORY, max_input_tokens=160),
        catalogue_titles=list(load_catalog().values()),
        batch_size=256,
        progress=False,
    )
    first = (teacher.first_answer or time.perf_counter()) - started
    return {
        "seconds": time.perf_counter() - started,
        "to_first_answer": first,
        "kept": stats.kept,
        "existing": stats.existing,
        "dropped": stats.dropped,
        "summary": stats.summary(),
        "peak_mb": _peak_mb(),
    }


def stage_encode(work: Path, count: int) -> dict[str, Any]:
    from explain.input_format import InputConfig, build_input
    from training.distill import WordCountEncoder
    from training.distill_io import iter_distilled
    from training.encoded import write_encoded
    from training.tokenization import train_bpe

    config = InputConfig(max_history=HISTORY, max_input_tokens=160)
    started = time.perf_counter()
    path = work / "train.jsonl"

    def texts() -> Iterator[str]:
        for r in islice(iter_distilled(path), 20_000):
            yield build_input(list(r.history), r.item, WordCountEncoder(), config).text
            yield r.text

    tokenizer = train_bpe(texts(), vocab_size=3000)
    trained = time.perf_counter() - started
    rows = write_encoded(
        iter_distilled(path),
        tokenizer,
        config,
        work / "train.arrow",
        max_target_tokens=48,
        total=count,
        progress=False,
    )
    return {
        "seconds": time.perf_counter() - started,
        "tokenizer_seconds": trained,
        "rows": rows,
        "arrow_mb": (work / "train.arrow").stat().st_size / 2**20,
        "peak_mb": _peak_mb(),
    }


def _child(stage: str, work: Path, count: int, crash_after: int | None) -> dict[str, Any] | None:
    command = [sys.executable, "-m", "benchmarks.scale_bench", "--stage", stage]
    command += ["--work", str(work), "--samples", str(count)]
    if crash_after is not None:
        command += ["--crash-after", str(crash_after)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == -signal.SIGKILL:
        return None  # the planned crash
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=894_752)
    parser.add_argument("--work", default="/tmp/prism-scale")
    parser.add_argument("--stage", choices=["distill", "encode"], default=None)
    parser.add_argument("--crash-after", type=int, default=None)
    args = parser.parse_args(argv)
    work = Path(args.work)
    if args.stage == "distill":
        print(json.dumps(stage_distill(work, args.samples, args.crash_after)))
        return
    if args.stage == "encode":
        print(json.dumps(stage_encode(work, args.samples)))
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    _child("distill", work, args.samples, args.samples // 2)
    crashed = time.perf_counter() - started
    crashed_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    resumed = _child("distill", work, args.samples, None)
    encoded = _child("encode", work, args.samples, None)
    assert resumed is not None and encoded is not None
    lines = sum(1 for _ in (work / "train.jsonl").open("rb"))
    dropped = sum(1 for _ in (work / "train.jsonl.dropped.jsonl").open("rb"))
    distill_s = crashed + resumed["seconds"] - resumed["to_first_answer"]
    peak = max(crashed_peak, resumed["peak_mb"], encoded["peak_mb"])
    rows = [
        ("distill, until the crash (SIGKILL at half)", crashed, crashed_peak),
        ("resume: ids read, done samples skipped", resumed["to_first_answer"], resumed["peak_mb"]),
        ("distill, the rest", resumed["seconds"] - resumed["to_first_answer"], resumed["peak_mb"]),
        ("encode (BPE on 20k records + Arrow)", encoded["seconds"], encoded["peak_mb"]),
    ]
    table = [
        f"Scale: {args.samples} synthetic samples, {HISTORY}-item histories, grounded teacher, "
        f"{os.cpu_count()} cores",
        "",
        "| stage | seconds | peak RSS (MB) |",
        "|---|---:|---:|",
        *(f"| {name} | {seconds:.1f} | {mb:.0f} |" for name, seconds, mb in rows),
        "",
        f"records kept {lines} (of them {resumed['existing']} before the crash), dropped "
        f"{dropped}; resumed run: {resumed['summary']}",
        f"Arrow file: {encoded['rows']} rows, {encoded['arrow_mb']:.0f} MB; "
        f"records file {(work / 'train.jsonl').stat().st_size / 2**20:.0f} MB",
    ]
    last = (
        f"scale: {args.samples} samples; peak RSS {peak:.0f} MB; distill {distill_s:.0f} s; "
        f"resume {resumed['to_first_answer']:.0f} s; encode {encoded['seconds']:.0f} s"
    )
    text = "\n".join([*table, "", last])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M')}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
