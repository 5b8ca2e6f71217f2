"""Teacher client throughput against a local server that answers after a fixed delay.

    python -m benchmarks.teacher_throughput [--samples 4000] [--delay-ms 100] \\
        [--baseline-commit a73b76c]

Starts `benchmarks.delay_server` in its own process on 127.0.0.1, then sends the same prompts
through each client and reports samples/s:

- the baseline: the client of `--baseline-commit` (read from git), driven as its
  distillation loop drove it: batches of 16, each waited for before the next (8 in flight);
- this checkout's async client, streamed (no barrier), at each `--concurrency`.

Client and server share the machine's cores; the table says how many there were.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from explain.items import Item
from training.data.types import Sample
from training.teachers.base import TeacherFailure, TeacherRequest, TeacherResult
from training.teachers.openai import OpenAICompatibleTeacher

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(port: int, delay_ms: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "benchmarks.delay_server", "--port", str(port)]
    server = subprocess.Popen([*command, "--delay-ms", str(delay_ms)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "x"})
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the delay server did not start")


def _requests(count: int) -> list[TeacherRequest]:
    item = Item("Alien (1979)", "1", {"genres": ["Sci-Fi"]})
    return [TeacherRequest(Sample(f"u{k}", (), item, k), f"prompt {k}") for k in range(count)]


def _baseline_class(commit: str) -> Any:
    """The OpenAI client as it was at `commit`, loaded from git under another module name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:training/teachers/openai.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_openai.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_openai", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OpenAICompatibleTeacher


def _timed(
    run: Callable[[list[TeacherRequest]], list[TeacherResult]], count: int
) -> dict[str, Any]:
    requests = _requests(count)
    started = time.perf_counter()
    results = run(requests)
    seconds = time.perf_counter() - started
    failed = sum(isinstance(r, TeacherFailure) for r in results)
    return {"samples": count, "failed": failed, "seconds": seconds, "per_s": count / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--baseline-samples", type=int, default=800)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--baseline-commit", default="a73b76c")
    args = parser.parse_args(argv)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(port, args.delay_ms)
    rows: list[dict[str, Any]] = []
    try:
        old = _baseline_class(args.baseline_commit)(url, "m", api_key="")

        def batched(requests: list[TeacherRequest]) -> list[TeacherResult]:
            out: list[TeacherResult] = []
            for start in range(0, len(requests), 16):
                out.extend(old.explain(requests[start : start + 16]))
            return out

        row = _timed(batched, args.baseline_samples)
        rows.append(
            {"client": f"{args.baseline_commit} (threads, batches of 16)", "in_flight": 8, **row}
        )
        old.close()
        for concurrency in args.concurrency:
            new = OpenAICompatibleTeacher(
                url, "m", api_key="", concurrency=concurrency, mode="completions"
            )

            def streamed(requests: list[TeacherRequest], teacher: Any = new) -> list[TeacherResult]:
                return [result for _, result in teacher.stream(requests)]

            rows.append(
                {
                    "client": "async, streamed",
                    "in_flight": concurrency,
                    **_timed(streamed, args.samples),
                }
            )
    finally:
        server.terminate()
        server.wait()
    cores = os.cpu_count()
    lines = [
        f"Teacher client throughput: local server on 127.0.0.1, {args.delay_ms:.0f} ms per answer, "
        f"{cores} cores shared by client and server",
        "",
        "| client | in flight | samples | failed | seconds | samples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['client']} | {r['in_flight']} | {r['samples']} | {r['failed']} | "
            f"{r['seconds']:.1f} | {r['per_s']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    (RESULTS / f"teacher-{stamp}.md").write_text(table + "\n")
    (RESULTS / f"teacher-{stamp}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
