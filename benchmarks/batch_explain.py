"""`prism-batch explain` on local Ray against the HTTP service, same rows, same run.

    python -m benchmarks.batch_explain [--store store --name prism-movies] [--rows 2000]

The rows are the HTTP benchmark's requests (5-30 history films, half known users), written to
a JSON-lines log. First `prism-batch explain` on a local Ray with `--workers` actors (its
whole process tree's RSS sampled every 0.2 s: driver, Ray's own processes, the actors), then
the service as the run command starts it, sent the same rows by `--concurrency` clients over
HTTP on 127.0.0.1. Both share the machine's cores; the table says how many.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.http_latency import payloads
from benchmarks.server import start_server, wait_ready

RESULTS = Path(__file__).parent / "results"


class TreeMemory:
    """Peak RSS of a process and all its descendants, summed, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):  # the root has exited
                for process in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a child exited meanwhile
                        total += process.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_batch(log: Path, out: Path, store: Path, name: str, workers: int) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "bulk.cli", "explain", "--input", str(log), "--output", str(out),
        "--store", str(store), "--name", name, "--workers", str(workers), "--no-progress",
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    stdout, _ = process.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop()
    if process.returncode != 0:
        raise RuntimeError(f"prism-batch failed ({process.returncode})")
    return {"seconds": seconds, "peak_mb": peak, "summary": stdout.strip().splitlines()[-1]}


async def _send(url: str, bodies: list[dict[str, Any]], concurrency: int) -> list[int]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    statuses: list[int] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            reply = await client.post(f"{url}/v1/explanations", json=body)
            statuses.append(reply.status_code)

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses


def run_http(
    bodies: list[dict[str, Any]], store: Path, name: str, concurrency: int
) -> dict[str, Any]:
    port = _free_port()
    server = start_server(store, name, port, ["--limit-concurrency", "512"])
    url = f"http://127.0.0.1:{port}"
    try:
        memory = TreeMemory(server.pid)
        wait_ready(url, server)
        started = time.perf_counter()
        statuses = asyncio.run(_send(url, bodies, concurrency))
        seconds = time.perf_counter() - started
        peak = memory.stop()
    finally:
        server.terminate()
        server.wait()
    ok = sum(s == 200 for s in statuses)
    return {"seconds": seconds, "peak_mb": peak, "ok": ok, "statuses": sorted(set(statuses))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    store = Path(args.store).resolve()
    bodies = payloads(store, args.name, args.rows, seed=7, max_new_tokens=48)
    work = Path(tempfile.mkdtemp(prefix="prism-batch-bench-"))
    log = work / "log.jsonl"
    log.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    batch = run_batch(log, work / "out", store, args.name, args.workers)
    http = run_http(bodies, store, args.name, args.concurrency)
    rows = len(bodies)
    table = "\n".join(
        [
            f"Bulk explain vs the HTTP service: {rows} rows (5-30 history films, half known "
            f"users), {args.name}, {os.cpu_count()} cores shared by everything",
            "",
            "| path | seconds (wall, incl. start-up) | rows/s | peak RSS, all processes (MB) |",
            "|---|---:|---:|---:|",
            f"| prism-batch, local Ray, {args.workers} workers | {batch['seconds']:.1f} | "
            f"{rows / batch['seconds']:.1f} | {batch['peak_mb']:.0f} |",
            f"| HTTP service, {args.concurrency} clients (after /readyz) | {http['seconds']:.1f} "
            f"| {http['ok'] / http['seconds']:.1f} | {http['peak_mb']:.0f} |",
            "",
            f"prism-batch: {batch['summary']}",
            f"HTTP: {http['ok']} of {rows} answered 200 (statuses {http['statuses']})",
        ]
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"batch-{time.strftime('%Y%m%d-%H%M')}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
