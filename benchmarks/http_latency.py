"""Latency and throughput through HTTP, the way a ranker sees them.

    python -m benchmarks.http_latency --url http://127.0.0.1:8000 [--store store --name prism-movies]

Phase 1 sends requests one at a time (p50/p95 of the whole round trip); phase 2 keeps 16
requests in flight (throughput and latency under concurrency, so dynamic batching works).
Requests come from the sample catalogue: histories of 5 to 30 films, half known users, half
unknown. Prints a table and writes it under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def payloads(
    store: Path, name: str, count: int, seed: int, max_new_tokens: int
) -> list[dict[str, Any]]:
    from benchmarks.engines import make_requests
    from model_store.store import ModelStore

    version = ModelStore(store).resolve(name, "production")
    out = []
    for r in make_requests(version.path, count, seed):
        out.append(
            {
                "user_id": r["user_id"],
                "history": r["history"],
                "recommended_item": r["item"],
                "options": {"max_new_tokens": max_new_tokens},
            }
        )
    return out


async def _run(
    url: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], float, list[int]]:
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            start = time.perf_counter()
            response = await client.post("/v1/explanations", json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            statuses.append(response.status_code)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await client.post("/v1/explanations", json=bodies[0])  # connection + warm path
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed, statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)

    bodies = payloads(
        Path(args.store), args.name, max(args.sequential, args.concurrent), 1, args.max_new_tokens
    )
    models = httpx.get(f"{args.url}/v1/models", timeout=10).json()["models"][0]
    rows = []
    for label, count, concurrency in (
        ("one at a time", args.sequential, 1),
        (f"{args.concurrency} in flight", args.concurrent, args.concurrency),
    ):
        latencies, elapsed, statuses = asyncio.run(_run(args.url, bodies[:count], concurrency))
        ok = sum(1 for s in statuses if s == 200)
        rows.append(
            {
                "mode": label,
                "requests": count,
                "ok": ok,
                "p50_ms": statistics.median(latencies),
                "p95_ms": float(np.percentile(latencies, 95)),
                "throughput_rps": count / elapsed,
            }
        )
    setup = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": f"{models['name']}@{models['version']} ({models['provider']}, d_model {models['d_model']})",
        "history": "5-30 films",
        "max_new_tokens": args.max_new_tokens,
        "decoding": "greedy",
        "client": "httpx on the same machine",
    }
    lines = [
        f"# HTTP latency ({setup['date']})",
        "",
        "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items() if k != "date"),
        "",
        "| mode | requests | 200 OK | p50 ms | p95 ms | throughput req/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['mode']} | {r['requests']} | {r['ok']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['throughput_rps']:.1f} |"
        for r in rows
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    (out / f"http-{stamp}.md").write_text(table)
    (out / f"http-{stamp}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
