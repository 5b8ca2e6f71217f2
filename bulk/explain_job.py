"""`prism-batch explain`: every row of a request log explained by one published version.

Each row goes through what the service does with a request: the service's request model
(the default limits, or the `PRISM_*` settings in force) validates it, and the one
`explain.Explainer` (ONNX Runtime, loaded by the service's loader) prepares, generates and
finishes it, with the verifier and the fallback. A row that fails validation or preparation
is written with its `error` and no explanation; nothing is dropped silently.

Work is cut into chunks (`bulk.inputs`); chunk `k` is written to `part-<k>.parquet` under a
temporary name and renamed when whole. A rerun after a crash skips every chunk whose part
exists, so no row is explained twice or written twice. The version is resolved once and
recorded in `_job.json`; a rerun explains with that version, whatever the alias says now.

`ChunkExplainer` is the unit of work of both engines: in this process (`engine="local"`) or
as a Ray Data actor pool (`engine="ray"`, `map_batches` with one actor per worker, each
loading the model once).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from bulk.inputs import Chunk, plan_chunks, read_chunk
from explain.errors import PrepareError
from explain.explainer import Explainer
from explain.types import ExplainJob, Explanation
from model_store.store import ModelStore
from service.loader import load_served_explainer
from service.schemas.requests import build_request_models
from service.settings import Settings

logger = logging.getLogger(__name__)

JOB_FILE = "_job.json"
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("user_id", pa.string()),
        ("recommended_item", pa.string()),
        ("explanation", pa.string()),
        ("evidence", pa.string()),  # JSON: the claims the sentence relies on
        ("fallback", pa.bool_()),
        ("fallback_reason", pa.string()),
        ("user_known", pa.bool_()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("error", pa.string()),
    ]
)


def part_path(output: Path, index: int) -> Path:
    return output / f"part-{index:06d}.parquet"


def _without_nulls(value: Any) -> Any:
    """Parquet structs give absent fields as nulls; the request schema wants them absent."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@dataclass(frozen=True)
class JobSpec:
    """What every worker needs to load the same model the same way (picklable for Ray)."""

    input: str
    output: str
    store: str
    name: str
    version: str
    batch_size: int = 32
    threads: int = 1


class ChunkExplainer:
    """Loads the version once; explains a chunk and writes its part file."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        settings = Settings(
            store_dir=Path(spec.store), model_name=spec.name, model_ref=spec.version
        )
        store = ModelStore(settings.store_dir)
        version = store.resolve(spec.name, spec.version)
        self.explainer: Explainer = load_served_explainer(
            store, version, settings, intra_op_threads=spec.threads
        )
        self.request_model = build_request_models(settings).explain

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        """Ray Data's entry point: a batch of chunk descriptions -> one summary per chunk."""
        keys = list(batch)
        summaries = [
            self.run(Chunk.from_dict({k: batch[k][i] for k in keys}))
            for i in range(len(batch[keys[0]]))
        ]
        return {k: [s[k] for s in summaries] for k in summaries[0]}

    def run(self, chunk: Chunk) -> dict[str, Any]:
        started = time.perf_counter()
        rows = read_chunk(Path(self.spec.input), chunk)
        table = pa.Table.from_pylist(self.explain_rows(rows, chunk.first_row), schema=SCHEMA)
        target = part_path(Path(self.spec.output), chunk.index)
        partial = target.with_name(target.name + ".partial")
        pq.write_table(table, partial)
        os.replace(partial, target)  # whole or absent: a crash never leaves half a part
        fallbacks = sum(bool(v) for v in table.column("fallback").to_pylist())
        errors = sum(v is not None for v in table.column("error").to_pylist())
        return {
            "index": chunk.index,
            "rows": len(rows),
            "fallbacks": fallbacks,
            "errors": errors,
            "seconds": time.perf_counter() - started,
        }

    def explain_rows(self, rows: Sequence[Any], first_row: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        jobs: list[tuple[int, ExplainJob]] = []
        for k, raw in enumerate(rows):
            record = {"row": first_row + k, "model_name": self.spec.name}
            record["model_version"] = self.spec.version
            try:
                request = self.request_model.model_validate(_without_nulls(raw))
                job = request.to_job()
                self.explainer.prepare(job)  # a request that cannot be prepared is its error
            except ValidationError as exc:
                record["error"] = f"invalid request: {exc.errors()[0]['msg']}"
            except PrepareError as exc:
                record["error"] = f"cannot prepare: {exc}"
            else:
                record["user_id"] = job.user_id
                record["recommended_item"] = job.item.title
                jobs.append((k, job))
            out.append(record)
        answers = self.explainer.explain_all(
            [job for _, job in jobs], batch_size=self.spec.batch_size
        )
        for (k, _), answer in zip(jobs, answers, strict=True):
            out[k].update(_answer_columns(answer))
        return out


def _answer_columns(answer: Explanation) -> dict[str, Any]:
    return {
        "explanation": answer.text,
        "evidence": json.dumps(list(answer.evidence), ensure_ascii=False, default=str),
        "fallback": answer.fallback,
        "fallback_reason": answer.fallback_reason,
        "user_known": answer.user_known,
    }


def pending_chunks(spec: JobSpec, chunk_rows: int) -> tuple[list[Chunk], int]:
    """The chunks still to do, and how many rows the done ones hold."""
    chunks = plan_chunks(Path(spec.input), chunk_rows)
    done = [c for c in chunks if part_path(Path(spec.output), c.index).exists()]
    finished = {c.index for c in done}
    return [c for c in chunks if c.index not in finished], sum(c.count for c in done)


def prepare_output(
    input_path: Path, output: Path, store_dir: Path, name: str, ref: str, chunk_rows: int
) -> JobSpec:
    """The job's spec; a rerun reads it back (same version, same chunks)."""
    output.mkdir(parents=True, exist_ok=True)
    marker = output / JOB_FILE
    for stale in output.glob("*.partial"):  # a part a crash left half written
        stale.unlink()
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved["input"] != str(input_path) or saved["chunk_rows"] != chunk_rows:
            raise ValueError(
                f"{output} holds a job over {saved['input']} in chunks of "
                f"{saved['chunk_rows']} rows: use another --output, or the same input and "
                "--chunk-rows to resume it"
            )
        version = str(saved["version"])
    else:
        version = ModelStore(store_dir).resolve(name, ref).version
        job = {"input": str(input_path), "chunk_rows": chunk_rows, "name": name}
        marker.write_text(json.dumps({**job, "version": version}, indent=2))
    return JobSpec(str(input_path), str(output), str(store_dir), name, version)


def run_chunks(
    spec: JobSpec,
    chunks: Sequence[Chunk],
    *,
    engine: str,
    workers: int,
    ray_address: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Each chunk's summary as it is written (any order)."""
    if not chunks:
        return
    if engine == "local":
        explainer = ChunkExplainer(spec)
        for chunk in chunks:
            yield explainer.run(chunk)
        return
    if engine != "ray":
        raise ValueError(f"unknown engine {engine!r} (local, ray)")
    yield from _run_on_ray(spec, chunks, workers, ray_address)


def _run_on_ray(
    spec: JobSpec, chunks: Sequence[Chunk], workers: int, ray_address: str | None
) -> Iterator[dict[str, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # A local Ray by default: this machine's cores, no dashboard.
        ray.init(
            address=ray_address,
            num_cpus=None if ray_address else max(workers, 1),
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    try:
        dataset = ray.data.from_items([c.to_dict() for c in chunks]).map_batches(
            ChunkExplainer,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            concurrency=workers,
            num_cpus=1,
        )
        yield from dataset.iter_rows()
    finally:
        if started_here:
            ray.shutdown()


def explain_log(
    spec: JobSpec,
    chunk_rows: int,
    *,
    engine: str = "ray",
    workers: int = 2,
    ray_address: str | None = None,
    on_chunk: Callable[[dict[str, Any], int], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the job; returns its totals. `on_chunk(summary, rows_done)` after each."""
    started = time.perf_counter()
    chunks, already = pending_chunks(spec, chunk_rows)
    totals: dict[str, Any] = {
        "rows": 0,
        "fallbacks": 0,
        "errors": 0,
        "chunks": 0,
        "skipped_rows": already,
    }
    for summary in run_chunks(
        spec, chunks, engine=engine, workers=workers, ray_address=ray_address
    ):
        for key in ("rows", "fallbacks", "errors"):
            totals[key] += int(summary[key])
        totals["chunks"] += 1
        if on_chunk is not None:
            on_chunk(summary, totals["rows"])
    totals["seconds"] = time.perf_counter() - started
    return totals


def read_output(output: Path) -> pa.Table:
    """Every part, in row order."""
    parts = sorted(output.glob("part-*.parquet"))
    if not parts:
        return SCHEMA.empty_table()
    return pa.concat_tables(pq.read_table(p) for p in parts).sort_by("row")
