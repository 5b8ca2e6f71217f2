"""Engines side by side, in one run, on the same weights and the same requests.

    python -m benchmarks.engines --store store --name prism-movies

Every engine runs in its own subprocess (so each one's peak RSS is its own), one after the
other, on the same request file: PyTorch eager `generate` (HF, KV cache), ONNX Runtime with
numpy feeds (what the service runs on CPU), ONNX Runtime with IO binding (what it runs on
CUDA), and ONNX Runtime on the version's int8 and fp16 variants (`training.variants`,
measured whether or not their gate passed). Every engine does the whole
request path: build the input, generate greedily with the slot ban, fill the slots. The table
reports per-batch latency percentiles, throughput, peak RSS and whether the tokens agree with
PyTorch's, plus ratios against PyTorch.

Timings on a shared machine are noisy, and a burst of load from elsewhere lands on whichever
engine happens to be running. So the engines run in `--rounds` rounds (default 3), the order
rotated each round. p50 is the median of the rounds' p50s (with their range), p95 and the
throughput pool every round, and the speed-up is the median of the per-round ratios, each
taken between runs minutes apart at most. Compare ratios, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cpu_label

ENGINES = ("torch", "ort", "ort-iobinding", "ort-int8", "ort-fp16")
VARIANT_ENGINES = ("ort-int8", "ort-fp16")


def make_requests(version_path: Path, count: int, seed: int) -> list[dict[str, Any]]:
    from explain.users import UserTable
    from training.data.catalog import load_catalog

    items = sorted(load_catalog().values(), key=lambda i: i.item_id or "")
    known = UserTable.load(version_path / "users").ids()
    rng = random.Random(seed)
    requests = []
    for k in range(count):
        chosen = rng.sample(items, rng.randint(6, 31))
        user = rng.choice(known) if known and k % 2 == 0 else f"bench-unknown-{k}"
        requests.append(
            {
                "user_id": user,
                "history": [i.to_dict() for i in chosen[:-1]],
                "item": chosen[-1].to_dict(),
            }
        )
    return requests


def _jobs(requests: list[dict[str, Any]], max_new_tokens: int) -> list[Any]:
    from explain.items import Item
    from explain.types import ExplainJob

    return [
        ExplainJob(
            r["user_id"],
            tuple(Item.from_dict(h) for h in r["history"]),
            Item.from_dict(r["item"]),
            max_new_tokens,
            1,
        )
        for r in requests
    ]


def _explainer(args: argparse.Namespace, tmp: Path) -> Any:
    """The engine under test, as one `Explainer` (the same stages for every engine)."""
    from explain import artifacts
    from explain.explainer import DecodeSettings
    from explain.input_format import check_format
    from explain.loading import load_onnx_explainer
    from explain.onnx_backend import OnnxSeq2Seq
    from model_store.store import ModelStore

    version = ModelStore(Path(args.store)).resolve(args.name, args.ref)
    decode = DecodeSettings(max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens)
    if args.worker == "torch":
        import torch

        from training.torch_backend import torch_explainer

        torch.set_num_threads(args.threads)
        return torch_explainer(version.path, decode=decode)
    explainer = load_onnx_explainer(
        version.path,
        name=version.name,
        version=version.version,
        input_config=check_format(version.manifest.input_format.model_dump()),
        generation=version.manifest.generation,
        provider="cpu",
        intra_op_threads=args.threads,
        decode=decode,
        # Every variant the version carries, whether or not its gate passed: this measures.
        variant=args.worker.removeprefix("ort-") if args.worker in VARIANT_ENGINES else "fp32",
        servable=artifacts.VARIANTS,
    )
    if args.worker == "ort-iobinding":  # the CUDA path, exercised on CPU
        backend = explainer.backend
        assert isinstance(backend, OnnxSeq2Seq)
        backend.encoder.io_binding = backend.decoder.io_binding = True
    return explainer


def worker(args: argparse.Namespace) -> None:
    requests = json.loads(Path(args.inputs).read_text())
    jobs = _jobs(requests, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        explainer = _explainer(args, Path(tmp))

        def run(batch: list[Any]) -> list[list[int]]:
            return [list(e.token_ids) for e in explainer.explain(batch)]

        result: dict[str, Any] = {"engine": args.worker, "batches": {}}
        for batch_size in args.batch_sizes:
            run(jobs[:batch_size])  # warm-up for this shape family
            latencies, tokens, generated = [], [], 0
            for start in range(0, len(jobs) - batch_size + 1, batch_size):
                begin = time.perf_counter()
                out = run(jobs[start : start + batch_size])
                latencies.append(time.perf_counter() - begin)
                tokens.extend(out)
                generated += sum(len(t) for t in out)
            result["batches"][str(batch_size)] = {
                "latencies_s": latencies,
                "tokens": tokens,
                "generated_tokens": generated,
            }
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps(result))


def _row(
    engine: str,
    batch: int,
    rounds: list[dict[str, Any]],
    reference: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """One engine at one batch size, over its rounds (`reference`: PyTorch's rounds)."""
    per_round = [float(np.percentile(np.asarray(r["latencies_s"]) * 1000, 50)) for r in rounds]
    lat = np.concatenate([np.asarray(r["latencies_s"]) for r in rounds]) * 1000
    total_s = float(np.sum(lat)) / 1000
    requests = sum(len(r["tokens"]) for r in rounds)
    agree = speedup = None
    if reference is not None:
        tokens, ref = rounds[0]["tokens"], reference[0]["tokens"]
        agree = sum(a == b for a, b in zip(tokens, ref, strict=True)) / max(len(tokens), 1)
        ref_p50 = [float(np.percentile(np.asarray(r["latencies_s"]), 50)) * 1000 for r in reference]
        speedup = float(np.median([t / e for t, e in zip(ref_p50, per_round, strict=True) if e]))
    return {
        "engine": engine,
        "batch": batch,
        "p50_ms": float(np.median(per_round)),
        "p50_range_ms": [min(per_round), max(per_round)],
        "p95_ms": float(np.percentile(lat, 95)),
        "requests_per_s": requests / total_s if total_s else 0.0,
        "tokens_per_s": sum(r["generated_tokens"] for r in rounds) / total_s if total_s else 0.0,
        "token_agreement": agree,
        "speedup_vs_torch": speedup,
    }


def render(rows: list[dict[str, Any]], rss: dict[str, float], setup: dict[str, Any]) -> str:
    lines = [
        f"# Engine comparison ({setup['date']})",
        "",
        "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items() if k != "date"),
        "",
        "| engine | batch | p50 ms | p50 range ms | p95 ms | req/s | tokens/s | peak RSS MB "
        "| tokens = torch | speed-up vs torch (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = 1.0 if r["engine"] == "torch" else r["speedup_vs_torch"]
        agree = "n/a" if r["token_agreement"] is None else f"{r['token_agreement']:.3f}"
        low, high = r["p50_range_ms"]
        lines.append(
            f"| {r['engine']} | {r['batch']} | {r['p50_ms']:.1f} | {low:.1f}-{high:.1f} "
            f"| {r['p95_ms']:.1f} | {r['requests_per_s']:.1f} | {r['tokens_per_s']:.0f} "
            f"| {rss[r['engine']]:.0f} | {agree} "
            f"| {'n/a' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines) + "\n"


def _schedule(engines: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, engine) in run order: every engine once a round, the order rotated."""
    return [
        (r, engines[(r + k) % len(engines)]) for r in range(rounds) for k in range(len(engines))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--ref", default="production")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument(
        "--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16]
    )
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--min-new-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every engine, rotated")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    from model_store.store import ModelStore

    version = ModelStore(Path(args.store)).resolve(args.name, args.ref)
    engines = [e for e in args.engines.split(",") if e]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    rounds = max(1, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "requests.json"
        inputs.write_text(json.dumps(make_requests(version.path, args.requests, args.seed)))
        for round_number, engine in _schedule(engines, rounds):
            result_file = Path(tmp) / f"{engine}-{round_number}.json"
            command = [
                sys.executable,
                "-m",
                "benchmarks.engines",
                "--worker",
                engine,
                "--inputs",
                str(inputs),
                "--result",
                str(result_file),
                "--store",
                args.store,
                "--name",
                args.name,
                "--ref",
                args.ref,
                "--batch-sizes",
                ",".join(map(str, args.batch_sizes)),
                "--max-new-tokens",
                str(args.max_new_tokens),
                "--min-new-tokens",
                str(args.min_new_tokens),
                "--threads",
                str(args.threads),
            ]
            print(f"round {round_number + 1}/{rounds}: {engine} ...", flush=True)
            subprocess.run(command, check=True)
            results[engine].append(json.loads(result_file.read_text()))
    rows = []
    for engine in engines:
        for batch in args.batch_sizes:
            data = [r["batches"][str(batch)] for r in results[engine]]
            reference = [r["batches"][str(batch)] for r in results.get("torch", [])]
            rows.append(
                _row(engine, batch, data, reference if engine != "torch" and reference else None)
            )
    manifest = version.manifest
    setup = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": f"{version.name}@{version.version}",
        "d_model": manifest.d_model,
        "requests": args.requests,
        "rounds": rounds,
        "history": "5-30 items",
        "max_new_tokens": args.max_new_tokens,
        "greedy": "yes",
        "threads": args.threads,
        "cpu": cpu_label(),
    }
    rss = {e: max(r["peak_rss_mb"] for r in results[e]) for e in engines}
    table = render(rows, rss, setup)
    print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    (out_dir / f"engines-{stamp}.md").write_text(table)
    (out_dir / f"engines-{stamp}.json").write_text(
        json.dumps({"setup": setup, "rows": rows}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
