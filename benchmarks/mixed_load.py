"""Mixed-length load: iteration-level batching against static batching, in one run.

    python -m benchmarks.mixed_load [--shape bart-base] [--clients 16] [--seconds 60]

The real server (uvicorn, as the run command starts it) is run twice per round, once with
`PRISM_CONTINUOUS_BATCHING=off` (static batches: a batch runs until its longest row ends)
and once with it on (rows join between steps and leave when they end), in rotated rounds;
`--modes static,continuous,lanes` adds a third server with two decode lanes.
`--clients` closed-loop clients on 127.0.0.1 each send catalogue requests (about 120 input
tokens) whose `max_new_tokens` is drawn uniformly from `--min-tokens`..`--max-tokens`.

`--shape bart-base` (the default) serves a random bart-base-shaped user-aware BART published
with the project's code (`benchmarks.peer_engines.build`, shared with `make bench-peers`),
with EOS banned below `--max-tokens`, so every request generates exactly its
`max_new_tokens`; the second pass is off (random weights fail every check, and a beam pass
would measure beam search, not batching). `--shape default` serves the trained default model
from `--store` as `make run` does, where answers end at EOS, mostly well before the limit.

Prints per mode: requests answered, requests/s, generated tokens/s, and latency p50/p99 of
short requests (`max_new_tokens` <= `--short`), long ones (>= `--long`) and all, plus the
ratios continuous/static. Tables go to `benchmarks/results/`. Last line:

    mixed: throughput continuous/static 1.7x; short p50 0.3x, p99 0.4x (bart-base, 16 clients)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.catalogue import catalogue_items, request_body
from benchmarks.server import running_server

# `lanes`: iteration-level batching with PRISM_DECODE_LANES=2 (two parts of the running
# decode side by side, each session with half the threads); run it with --modes.
MODES = ("static", "continuous", "lanes")


def server_env(args: argparse.Namespace, mode: str) -> dict[str, str]:
    env = {
        "PRISM_CONTINUOUS_BATCHING": "off" if mode == "static" else "on",
        "PRISM_DECODE_LANES": "2" if mode == "lanes" else "1",
        "PRISM_MAX_BATCH_SIZE": str(args.clients),
        "PRISM_INTRA_OP_THREADS": str(args.threads),
        "PRISM_MAX_NEW_TOKENS_LIMIT": str(max(96, args.max_tokens)),
        # A static bart-base batch of 96 tokens runs for seconds on 2 cores: admission and
        # deadlines are set for that shape, as an operator would, so nothing is refused and
        # both modes answer every request.
        "PRISM_MAX_QUEUE_WAIT_MS": "120000",
        "PRISM_REQUEST_TIMEOUT_MS": "120000",
        "PRISM_INFERENCE_WATCHDOG_S": "300",
    }
    if args.shape != "default":
        env.update(
            {
                "PRISM_MODEL_REF": "latest",
                "PRISM_VARIANT": "fp32",  # random weights: no variant can pass its gate
                "PRISM_MIN_NEW_TOKENS": str(args.max_tokens),
                "PRISM_SECOND_PASS_CANDIDATES": "1",
            }
        )
    return env


def requests_for(args: argparse.Namespace, count: int) -> list[dict[str, Any]]:
    items = catalogue_items()
    rng = random.Random(args.seed)
    out = []
    for k in range(count):
        chosen = rng.sample(items, 13)
        user = f"s{rng.randint(1, 500):04d}" if k % 2 else f"visitor-{k}"
        limit = rng.randint(args.min_tokens, args.max_tokens)
        out.append(request_body(chosen, user, max_new_tokens=limit))
    return out


async def drive(
    base_url: str, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """`--clients` closed-loop clients for `--seconds` after a warm-up; every answer recorded."""
    records: list[tuple[int, float, int, int]] = []  # max_new_tokens, seconds, status, tokens
    cursor = 0
    stop_at = 0.0

    async def client(http: httpx.AsyncClient, record: bool) -> None:
        nonlocal cursor
        while time.perf_counter() < stop_at:
            body = bodies[cursor % len(bodies)]
            cursor += 1
            started = time.perf_counter()
            response = await http.post("/v1/explanations", json=body)
            elapsed = time.perf_counter() - started
            tokens = response.json()["usage"]["output_tokens"] if response.status_code == 200 else 0
            if record:
                records.append(
                    (body["options"]["max_new_tokens"], elapsed, response.status_code, tokens)
                )

    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as http:
        stop_at = time.perf_counter() + args.warmup_seconds
        await asyncio.gather(*(client(http, False) for _ in range(args.clients)))
        started = time.perf_counter()
        stop_at = started + args.seconds
        await asyncio.gather(*(client(http, True) for _ in range(args.clients)))
        wall = time.perf_counter() - started
    return {"records": records, "wall_s": wall}


def batching_seen(base_url: str) -> dict[str, float]:
    """From the server's own metrics: decode steps of the running batch and rows per step
    (iteration-level), static batches and requests per batch (warm-up included); and the
    decode lanes the server says it runs (`/v1/models`)."""
    models = httpx.get(f"{base_url}/v1/models", timeout=30).json()
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("prism_decode_step_rows_", "prism_batch_size_")):
            key, _, value = line.partition(" ")
            values[key] = float(value)
    steps = values.get("prism_decode_step_rows_count", 0.0)
    batches = values.get("prism_batch_size_count", 0.0)
    return {
        "decode_steps": steps,
        "rows_per_step": values.get("prism_decode_step_rows_sum", 0.0) / steps if steps else 0.0,
        "batches": batches,
        "rows_per_batch": values.get("prism_batch_size_sum", 0.0) / batches if batches else 0.0,
        "lanes": float(models["models"][0].get("lanes", 1)),
    }


def summarise(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    records, wall = run["records"], run["wall_s"]
    ok = [r for r in records if r[2] == 200]

    def pct(rows: list[tuple[int, float, int, int]], q: float) -> float | None:
        return float(np.percentile([r[1] for r in rows], q) * 1000) if rows else None

    short = [r for r in ok if r[0] <= args.short]
    long = [r for r in ok if r[0] >= args.long]
    return {
        "answered": len(ok),
        "failed": len(records) - len(ok),
        "req_s": len(ok) / wall,
        "tokens_s": sum(r[3] for r in ok) / wall,
        "short_p50_ms": pct(short, 50),
        "short_p99_ms": pct(short, 99),
        "long_p50_ms": pct(long, 50),
        "all_p50_ms": pct(ok, 50),
        "all_p99_ms": pct(ok, 99),
        "short_n": len(short),
    }


def model_store(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    if args.shape == "default":
        return Path(args.store), args.name
    from benchmarks.peer_model import NAME, build

    built = work / "built.json"
    if not built.exists():
        print(f"building the {args.shape}-shaped model (export, parity, variants) ...", flush=True)
        build_args = argparse.Namespace(
            shape=args.shape, threads=args.threads, new_tokens=32, seed=args.seed
        )
        built.write_text(json.dumps(build(work, build_args)))
    return work / "store", NAME


def render(
    rows: list[dict[str, Any]], ratios: dict[str, float | None], args: argparse.Namespace
) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    lines = [
        f"# Mixed-length load ({args.shape}, {args.clients} clients, max_new_tokens "
        f"{args.min_tokens}-{args.max_tokens}, {args.seconds:.0f} s per run, "
        f"{args.threads} threads, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "| round | mode | answered | req/s | tokens/s | short p50 ms | short p99 ms | long p50 ms "
        "| all p50 ms | all p99 ms | rows per step | requests per batch/join |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['round']} | {r['mode']} | {r['answered']} | {r['req_s']:.2f} | "
            f"{r['tokens_s']:.0f} | {ms(r['short_p50_ms'])} | {ms(r['short_p99_ms'])} | "
            f"{ms(r['long_p50_ms'])} | {ms(r['all_p50_ms'])} | {ms(r['all_p99_ms'])} | "
            f"{r['rows_per_step']:.1f} | {r['rows_per_batch']:.1f} |"
        )
    lines += ["", "| continuous / static unless named (median over rounds) | ratio |", "|---|---:|"]
    for key, value in ratios.items():
        lines.append(f"| {key} | {'n/a' if value is None else f'{value:.2f}x'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", choices=("bart-base", "default", "tiny"), default="bart-base", help="tiny: tests"
    )
    parser.add_argument("--store", default="store", help="the default model's store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--min-tokens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--short", type=int, default=32, help="short: max_new_tokens <= this")
    parser.add_argument("--long", type=int, default=80, help="long: max_new_tokens >= this")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="reuse a built model directory (default: a temp dir)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--modes", default="static,continuous", help=f"of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= set(MODES) or not {"static", "continuous"} <= set(modes):
        parser.error(f"--modes: static and continuous, and optionally lanes (of {MODES})")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    bodies = requests_for(args, 512)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="prism-mixed-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        store, name = model_store(args, work)
        for r in range(args.rounds):
            for k in range(len(modes)):
                mode = modes[(r + k) % len(modes)]
                print(f"round {r + 1}/{args.rounds}: {mode} ...", flush=True)
                env = server_env(args, mode)
                with running_server(store, name, env, log=work / f"server-{mode}.log") as server:
                    run = asyncio.run(drive(server.base_url, bodies, args))
                    batching = batching_seen(server.base_url)
                rows.append({"round": r + 1, "mode": mode, **summarise(run, args), **batching})

    def ratio(key: str, mode: str = "continuous", base: str = "static") -> float | None:
        values = []
        for r in range(1, args.rounds + 1):
            by = {row["mode"]: row for row in rows if row["round"] == r}
            a, b = by[mode].get(key), by[base].get(key)
            if a is not None and b:
                values.append(a / b)
        return float(np.median(values)) if values else None

    ratios = {
        "throughput (req/s)": ratio("req_s"),
        "short requests p50": ratio("short_p50_ms"),
        "short requests p99": ratio("short_p99_ms"),
        "long requests p50": ratio("long_p50_ms"),
        "all requests p99": ratio("all_p99_ms"),
    }
    if "lanes" in modes:
        for label, key in (("throughput (req/s)", "req_s"), ("short requests p50", "short_p50_ms")):
            ratios[f"lanes / continuous: {label}"] = ratio(key, "lanes", "continuous")
    table = render(rows, ratios, args)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"mixed-{args.shape}-{stamp}.md").write_text(table + "\n")
    (out / f"mixed-{args.shape}-{stamp}.json").write_text(
        json.dumps({"rows": rows, "ratios": ratios}, indent=1)
    )

    def shown(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}x"

    print(
        f"mixed: throughput continuous/static {shown(ratios['throughput (req/s)'])}; "
        f"short p50 {shown(ratios['short requests p50'])}, "
        f"p99 {shown(ratios['short requests p99'])} ({args.shape}, {args.clients} clients)"
    )
    failed = sum(r["failed"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
