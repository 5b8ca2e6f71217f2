"""Two servers side by side through HTTP, one request at a time, in one run.

    python -m benchmarks.http_compare --before-checkout /tmp/prism-before \\
        --before-store /tmp/store-before [--store store --name prism-movies]

Starts the server of another checkout of this repository (e.g. `git worktree add
/tmp/prism-before <commit>`) on its own store, and this checkout's server on `--store`, both
as the run command starts them; then sends the same requests (`benchmarks.http_latency`'s
payloads: 5-30 history films, half known users) to each, one at a time, in rotated rounds.
Reports p50/p95 per round and the median of the per-round p50 ratios: a change's latency cost
measured under the same machine load, which numbers from different runs cannot show.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.http_latency import payloads
from benchmarks.server import wait_ready


def _start(checkout: Path, store: Path, name: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PRISM_STORE_DIR": str(store.resolve()),
        "PRISM_MODEL_NAME": name,
        "PRISM_PROVIDER": "cpu",
        "PYTHONPATH": str(checkout.resolve()),  # that checkout's packages, not this one's
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--limit-concurrency", "512", "--backlog", "2048",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.DEVNULL)


def _round(client: httpx.Client, url: str, bodies: list[dict[str, Any]]) -> dict[str, float]:
    for body in bodies[:5]:
        client.post(url, json=body)  # warm the connection and the caches
    latencies, candidates = [], []
    for body in bodies:
        started = time.perf_counter()
        reply = client.post(url, json=body)
        latencies.append((time.perf_counter() - started) * 1000)
        reply.raise_for_status()
        candidates.append(reply.json().get("usage", {}).get("candidates", 1))
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, int(0.95 * len(latencies)) - 1)],
        "candidates": statistics.mean(candidates),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-checkout", type=Path, required=True)
    parser.add_argument("--before-store", type=Path, required=True)
    parser.add_argument("--store", type=Path, default=Path("store"))
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    servers = {
        "before": (args.before_checkout, args.before_store, 8101),
        "after": (Path.cwd(), args.store, 8102),
    }
    processes = {k: _start(c, s, args.name, p) for k, (c, s, p) in servers.items()}
    try:
        for label, (_, _, port) in servers.items():
            wait_ready(f"http://127.0.0.1:{port}", processes[label])
        bodies = payloads(args.store, args.name, args.requests, 0, args.max_new_tokens)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in servers}
        print("| round | server | p50 ms | p95 ms | candidates per answer |")
        print("|---:|---|---:|---:|---:|")
        with httpx.Client(timeout=30) as client:
            for number in range(args.rounds):
                order = list(servers) if number % 2 == 0 else list(servers)[::-1]
                for label in order:
                    url = f"http://127.0.0.1:{servers[label][2]}/v1/explanations"
                    result = _round(client, url, bodies)
                    results[label].append(result)
                    print(f"| {number} | {label} | {result['p50']:.1f} | {result['p95']:.1f} | "
                          f"{result['candidates']:.2f} |")  # fmt: skip
        ratios = [
            a["p50"] / b["p50"] for a, b in zip(results["after"], results["before"], strict=True)
        ]
        print(f"\ncompare: p50 after/before {statistics.median(ratios):.2f}x (median of "
              f"{args.rounds} rounds: {', '.join(f'{r:.2f}' for r in ratios)}); "
              f"{args.requests} requests per round")  # fmt: skip
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
