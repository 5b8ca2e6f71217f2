"""Overload: find saturation, offer twice that, and count what comes back.

    python -m benchmarks.overload --store store --name prism-movies [--seconds 60]

Starts the real server as `make run` does (uvicorn with the run command's flags) unless
`--url` names one, and drives it with a raw asyncio HTTP/1.1 client on 127.0.0.1 (no HTTP
library in the hot path, so the client costs the shared cores as little as possible):

1. **Saturation**: closed-loop clients at increasing concurrency, `--probe-seconds` each; the
   best rate of 200s is the saturation throughput.
2. **2x overload**: open-loop Poisson arrivals at twice that rate for `--seconds`, each on a
   pooled keep-alive connection (a new one when none is free), while a separate connection
   samples `GET /healthz` every 50 ms.

It prints saturation, goodput (200s per second, and as a share of saturation), the counts
by status, 503s with and without `Retry-After`, 504s, other 5xx, connection errors, the
latency of the 200s, and `/healthz` latency; results go to `benchmarks/results/`. Last line:

    overload: saturation 98.1 req/s; 2x goodput 91.3 req/s (93%); 504 0; other 5xx 0; ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.catalogue import catalogue_items, request_body
from benchmarks.raw_http import Pool, Tally
from benchmarks.server import start_server, wait_ready

# The run command's flags (Makefile `run`, the images' CMD): tests/deploy checks they agree.
RUN_FLAGS = ("--timeout-graceful-shutdown", "25", "--limit-concurrency", "512", "--backlog", "2048")


def bodies(count: int, seed: int = 0) -> list[bytes]:
    """Requests like a ranker's: catalogue films, 5-30 of history, known and unknown users."""
    items = catalogue_items()
    rng = random.Random(seed)
    out = []
    for k in range(count):
        chosen = rng.sample(items, rng.randint(6, 31))
        user = f"s{rng.randint(1, 500):04d}" if k % 2 else f"visitor-{k}"
        out.append(json.dumps(request_body(chosen, user)).encode())
    return out


async def closed_loop(pool: Pool, payloads: list[bytes], clients: int, seconds: float) -> float:
    """200s per second with `clients` clients each sending as soon as its answer arrives."""
    tally, until = Tally(), time.perf_counter() + seconds

    async def client(k: int) -> None:
        n = k
        while time.perf_counter() < until:
            await pool.call(payloads[n % len(payloads)], tally)
            n += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return tally.statuses[200] / (time.perf_counter() - started)


def sample_healthz(port: int, seconds: float, every_s: float = 0.05) -> list[float]:
    """`GET /healthz` every 50 ms from a separate process with blocking sockets, as a
    kubelet would probe: the load generator's own event loop never delays the samples."""
    import http.client

    latencies: list[float] = []
    until = time.perf_counter() + seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started if response.status == 200 else -1.0)
        except OSError:
            latencies.append(float("inf"))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(every_s)
    return latencies


async def open_loop(
    pool: Pool, payloads: list[bytes], rate: float, seconds: float
) -> tuple[Tally, list[float], float]:
    """Poisson arrivals at `rate` per second for `seconds`, whatever the answers do."""
    tally, rng = Tally(), random.Random(1)
    sampler = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.overload", "--sample-healthz", str(pool.port),
         "--seconds", str(seconds)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    next_at, n = started, 0
    while next_at < started + seconds:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(pool.call(payloads[n % len(payloads)], tally)))
        n += 1
        next_at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    out, _ = await asyncio.to_thread(sampler.communicate)
    return tally, [float(x) for x in json.loads(out)], elapsed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


async def measure(host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    payloads = bodies(256)
    pool = Pool(host, port)
    levels: dict[int, float] = {}
    for clients in args.levels:
        levels[clients] = await closed_loop(pool, payloads, clients, args.probe_seconds)
        print(f"saturation probe: {clients} clients -> {levels[clients]:.1f} req/s", flush=True)
    saturation = max(levels.values())
    rate = args.factor * saturation
    print(f"offering {rate:.1f} req/s ({args.factor:.0f}x) for {args.seconds:.0f} s", flush=True)
    tally, health, elapsed = await open_loop(pool, payloads, rate, args.seconds)
    pool.close()
    statuses = tally.statuses
    other_5xx = sum(v for k, v in statuses.items() if k >= 500 and k not in (503, 504))
    finite = [h for h in health if 0 <= h < float("inf")]
    return {
        "saturation_rps": saturation,
        "levels": levels,
        "offered_rps": rate,
        "seconds": elapsed,
        "sent": sum(statuses.values()) + tally.connection_errors,
        "statuses": dict(sorted(statuses.items())),
        "retry_after_503": tally.retry_after[True],
        "missing_retry_after_503": tally.retry_after[False],
        "connection_errors": tally.connection_errors,
        "connection_error_kinds": dict(tally.error_kinds),
        "goodput_rps": statuses[200] / elapsed,
        "goodput_share": statuses[200] / elapsed / saturation if saturation else 0.0,
        "gateway_timeouts": statuses[504],
        "other_5xx": other_5xx,
        "ok_p50_ms": percentile(tally.latencies_ok, 50),
        "ok_p99_ms": percentile(tally.latencies_ok, 99),
        "healthz_samples": len(health),
        "healthz_failures": len(health) - len(finite),  # a non-200 or no answer
        "healthz_p50_ms": percentile(finite, 50),
        "healthz_p99_ms": percentile(finite, 99),
        "healthz_max_ms": max(finite) * 1000 if finite else float("nan"),
    }


def render(result: dict[str, Any], setup: dict[str, Any]) -> str:
    rows = [
        ("saturation (best closed-loop rate of 200s)", f"{result['saturation_rps']:.1f} req/s"),
        ("offered (open loop, Poisson)", f"{result['offered_rps']:.1f} req/s"),
        ("sent", str(result["sent"])),
        ("by status", ", ".join(f"{k}: {v}" for k, v in result["statuses"].items())),
        ("goodput (200s)", f"{result['goodput_rps']:.1f} req/s ({result['goodput_share']:.0%})"),
        ("503 with / without Retry-After",
         f"{result['retry_after_503']} / {result['missing_retry_after_503']}"),
        ("504", str(result["gateway_timeouts"])),
        ("other 5xx", str(result["other_5xx"])),
        ("connection errors", str(result["connection_errors"])),
        ("200 latency p50 / p99", f"{result['ok_p50_ms']:.0f} / {result['ok_p99_ms']:.0f} ms"),
        ("/healthz p50 / p99 / max",
         f"{result['healthz_p50_ms']:.1f} / {result['healthz_p99_ms']:.1f} / "
         f"{result['healthz_max_ms']:.1f} ms ({result['healthz_samples']} samples, "
         f"{result['healthz_failures']} failed)"),
    ]  # fmt: skip
    lines = [
        f"# Overload ({setup['date']})",
        "",
        "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items() if k != "date"),
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 2x phase")
    parser.add_argument("--probe-seconds", type=float, default=8.0)
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[4, 16, 32]
    )
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--sample-healthz", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sample_healthz is not None:
        print(json.dumps(sample_healthz(args.sample_healthz, args.seconds)))
        return 0
    server = None
    if args.url:
        host, _, port = args.url.removeprefix("http://").rstrip("/").partition(":")
        port_number = int(port or 80)
    else:
        host, port_number = "127.0.0.1", args.port
        server = start_server(Path(args.store), args.name, port_number, RUN_FLAGS)
    try:
        wait_ready(f"http://{host}:{port_number}", server)
        result = asyncio.run(measure(host, port_number, args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    setup = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "server": args.url or f"uvicorn {' '.join(RUN_FLAGS)} (started here)",
        "model": f"{args.store}/{args.name}",
        "overload": f"{args.factor:.0f}x for {args.seconds:.0f} s",
        "saturation probes": f"{args.levels} clients x {args.probe_seconds:.0f} s",
        "cores": os.cpu_count(),
    }
    table = render(result, setup)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    (out / f"overload-{stamp}.md").write_text(table)
    (out / f"overload-{stamp}.json").write_text(json.dumps({"setup": setup, **result}, indent=2))
    print(
        f"overload: saturation {result['saturation_rps']:.1f} req/s; {args.factor:.0f}x goodput "
        f"{result['goodput_rps']:.1f} req/s ({result['goodput_share']:.0%}); 504 "
        f"{result['gateway_timeouts']}; other 5xx {result['other_5xx']}; connection errors "
        f"{result['connection_errors']}; 503 without Retry-After "
        f"{result['missing_retry_after_503']}; /healthz p99 {result['healthz_p99_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
