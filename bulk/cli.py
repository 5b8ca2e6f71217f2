"""`prism-batch`: bulk work with a published model.

    prism-batch explain --input log.parquet --output out/ [--store store --name prism-movies
        --ref production] [--workers 2] [--ray-address ADDRESS] [--engine ray|local]

Rows are JSON requests as `POST /v1/explanations` takes them (`user_id`, `history`,
`recommended_item`, optional `options`), one per line of a .jsonl file or one per row of a
.parquet file. The output folder gets one Parquet part per chunk; rerun the same command to
resume after a crash.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bulk.explain_job import explain_log, pending_chunks, prepare_output
from bulk.inputs import InputFormatError
from model_store.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism-batch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("explain", help="explain every row of a request log")
    run.add_argument("--input", required=True, help="a .parquet or .jsonl request log")
    run.add_argument("--output", required=True, help="folder for the Parquet parts")
    run.add_argument("--store", default="store", help="model store root (default: ./store)")
    run.add_argument("--name", default="prism-movies", help="model name in the store")
    run.add_argument("--ref", default="production", help="version or alias (default: production)")
    run.add_argument("--engine", choices=["ray", "local"], default="ray")
    run.add_argument("--workers", type=int, default=2, help="Ray actors, one model each")
    run.add_argument(
        "--ray-address", default=None, help="an existing Ray cluster (default: a local Ray)"
    )
    run.add_argument("--chunk-rows", type=int, default=256, help="rows per part file")
    run.add_argument("--no-progress", action="store_true")
    return parser


class ChunkProgress:
    """Rows done, rows/s and ETA, one line per chunk on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.started = time.perf_counter()

    def __call__(self, summary: dict[str, Any], done: int) -> None:
        if not self.enabled:
            return
        seconds = time.perf_counter() - self.started
        rate = done / seconds if seconds > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(
            f"explain: {done}/{self.total} rows, {rate:.1f} rows/s, ETA {eta:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        spec = prepare_output(
            Path(args.input), Path(args.output), Path(args.store), args.name, args.ref,
            args.chunk_rows,
        )  # fmt: skip
        chunks, _ = pending_chunks(spec, args.chunk_rows)
    except (InputFormatError, StoreError, ValueError, OSError) as exc:
        print(f"prism-batch: {exc}", file=sys.stderr)
        return 1
    progress = ChunkProgress(sum(c.count for c in chunks), not args.no_progress)
    totals = explain_log(
        spec,
        args.chunk_rows,
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        on_chunk=progress,
    )
    rate = totals["rows"] / totals["seconds"] if totals["seconds"] > 0 else 0.0
    print(
        f"explain: {totals['rows']} rows explained with {spec.name}@{spec.version} "
        f"({totals['skipped_rows']} already done), fallbacks {totals['fallbacks']}, "
        f"errors {totals['errors']}, {totals['seconds']:.1f} s ({rate:.1f} rows/s) -> "
        f"{args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
