"""The GPU check's served-path checks (`benchmarks.gpu_ort` runs them in its process): the
published model as the service loads it, on one provider and variant, against CPU fp32; and
graphs of the paper's shape served with its tokenizer, decoded in a static batch and in a
running batch (`explain.continuous`) whose cross keys and values stay on the device or are
copied from the host at every step."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_timing import error_row, timed
from explain import artifacts as spec

HISTORY_LENGTHS = (0, 1, 2, 5, 10, 20, 40)  # served requests: none, one film, up to 40


def catalogue_jobs(known_users: Sequence[str], count: int, seed: int = 7) -> list[Any]:
    """`count` requests from the project's catalogue: histories of 0 to 40 films, two in
    three from known users and the rest from users the model has never seen."""
    from benchmarks.catalogue import catalogue_items
    from explain.types import ExplainJob

    items = catalogue_items()
    rng = random.Random(seed)
    jobs = []
    for k in range(count):
        chosen = rng.sample(items, rng.choice(HISTORY_LENGTHS) + 1)
        user = known_users[k % len(known_users)] if k % 3 and known_users else f"new-{k}"
        jobs.append(ExplainJob(user, tuple(chosen[:-1]), chosen[-1]))
    return jobs


def running_candidates(explainer: Any, prepared: Sequence[Any], max_rows: int = 16) -> list[Any]:
    """Every request's candidates from one running batch that rows join (four at a time,
    as room frees up) and leave as they end."""
    from explain.continuous import RunningBatch

    running = RunningBatch(explainer, max_rows=max_rows)
    waiting = list(enumerate(prepared))
    got: dict[Any, Any] = {}
    while waiting or len(running):
        if waiting and running.free:
            take = waiting[: min(4, running.free)]
            waiting = waiting[len(take) :]
            running.join(take)
        for ended in running.step():
            got[ended.key] = ended.generation.candidates
    return [got[k] for k in range(len(prepared))]


def load_as_published(
    version: Any,
    version_dir: Path,
    provider: str,
    variant: str,
    servable: Sequence[str],
    onnx_dir: Path | None = None,
) -> Any:
    """An explainer loaded as the service loads `version` (its input format and generation
    ids), from `version_dir` (and `onnx_dir`'s graphs, when given)."""
    from explain.input_format import check_format
    from explain.loading import load_onnx_explainer

    return load_onnx_explainer(
        version_dir,
        name=version.name,
        version=version.version,
        input_config=check_format(version.manifest.input_format.model_dump()),
        generation=version.manifest.generation,
        provider=provider,  # type: ignore[arg-type]
        variant=variant,
        servable=servable,
        onnx_dir=onnx_dir,
    )


def served_check(
    store_dir: Path, name: str, provider: str, variants: Sequence[str], count: int
) -> dict[str, Any]:
    """The published model as served, on `provider` in each variant, against CPU fp32."""
    from model_store.store import ModelStore

    version = ModelStore(store_dir).resolve(name, "production")
    servable = [k for k, v in version.manifest.variants.items() if v.servable]

    def explainer(where: str, variant: str) -> Any:
        return load_as_published(version, version.path, where, variant, servable)

    reference = explainer("cpu", spec.FP32)
    jobs = catalogue_jobs(reference.users.ids(), count)
    expected = [e.text for e in reference.explain(jobs)]
    out: dict[str, Any] = {"model": f"{version.name}@{version.version}", "requests": len(jobs)}
    rows = []
    for variant in variants:
        try:
            served = explainer(provider, variant)
            start = time.perf_counter()
            texts = [e.text for e in served.explain(jobs)]
            elapsed = time.perf_counter() - start
            prepared = [served.prepare(job) for job in jobs]
            static = [g.candidates for g in served.generate(prepared).generations]
            running = running_candidates(served, prepared)
            rows.append(
                {
                    "engine": f"served-{provider}-{variant}",
                    "same_text_as_cpu_fp32": sum(
                        a == b for a, b in zip(texts, expected, strict=True)
                    ),
                    "running_same_as_static": sum(
                        a == b for a, b in zip(running, static, strict=True)
                    ),
                    "explain_s": elapsed,
                    "example": texts[1],
                }
            )
        except Exception as error:
            rows.append(error_row(out["model"], f"served-{provider}-{variant}", error))
    out["rows"] = rows
    return out


def shaped_explainer(
    onnx_dir: Path, store_dir: Path, name: str, user_table: np.ndarray, provider: str, work: Path
) -> Any:
    """Graphs of another shape (the random bart-base) served as the service serves a model:
    the published model's tokenizer, inventory, input format and generation ids around
    them, and the graphs' own user table. Their fp16 variant on CUDA, else fp32."""
    import shutil

    from explain.users import save_user_table
    from model_store.store import ModelStore

    version = ModelStore(store_dir).resolve(name, "production")
    target = work / "shaped-version"
    skip = shutil.ignore_patterns(spec.ONNX_DIR, spec.USERS_DIR, spec.MODEL_DIR)
    shutil.copytree(version.path, target, ignore=skip, dirs_exist_ok=True)
    rows = {f"user-{k}": k for k in range(1, len(user_table))}
    save_user_table(target / spec.USERS_DIR, rows, user_table)
    variant = spec.FP16 if provider == "cuda" else spec.FP32
    return load_as_published(version, target, provider, variant, [variant], onnx_dir=onnx_dir)


class _RunMeter:
    """Adds up the time a session spends in `run` (graph, feeds and copies), per timed call."""

    def __init__(self, session: Any) -> None:
        self.original = session.run
        self.seconds = 0.0
        session.run = self  # the instance attribute shadows the method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def per_call_ms(self, calls: int) -> float:
        spent, self.seconds = self.seconds, 0.0
        return spent * 1000 / calls


def running_check(explainer: Any, count: int, repeats: int) -> dict[str, Any]:
    """`count` catalogue requests' first pass decoded three ways on one explainer: one static
    batch, and one running batch that all rows join at once (rows end at their own lengths
    and are cut out as they go), with the cross keys and values kept on the device between
    changes or copied from the host at every step. p50 of `repeats` after a warm-up each, and
    the mean time per decode inside the encoder's and decoder's `run` (the rest is the
    Python around them)."""
    from explain.continuous import RunningBatch

    jobs = catalogue_jobs(explainer.users.ids(), count)
    prepared = [explainer.prepare(job) for job in jobs]
    meters = {part: _RunMeter(getattr(explainer.backend, part)) for part in ("encoder", "decoder")}
    static: list[Any] = []

    def run_static() -> None:
        static[:] = [g.candidates for g in explainer.generate(prepared).generations]

    def inside() -> dict[str, float]:
        return {f"{part}_ms": meter.per_call_ms(repeats + 1) for part, meter in meters.items()}

    rows = [
        {
            "engine": "static batch",
            "p50_ms": statistics.median(timed(run_static, repeats, lambda: None)),
            **inside(),
        }
    ]
    for kept in (True, False):
        got: dict[Any, Any] = {}
        uploads: list[int] = []

        def run_running(
            keep: bool = kept, out: dict[Any, Any] = got, seen: list[int] = uploads
        ) -> None:
            running = RunningBatch(explainer, max_rows=len(prepared))
            running.keep_cross_on_device = keep
            running.join(list(enumerate(prepared)))
            while len(running):
                out.update({e.key: e.generation.candidates for e in running.step()})
            seen[:] = [running.cross_uploads, running.steps]

        times = timed(run_running, repeats, lambda: None)
        rows.append(
            {
                "engine": "running batch, cross "
                + ("kept on the device" if kept else "copied from the host each step"),
                "p50_ms": statistics.median(times),
                "same_as_static": sum(got[k] == static[k] for k in range(len(prepared))),
                "uploads": uploads[0],
                "steps": uploads[1],
                **inside(),
            }
        )
    info = explainer.info
    return {
        "model": f"{info.variant} on {info.provider}",
        "requests": count,
        "rows": rows,
    }
