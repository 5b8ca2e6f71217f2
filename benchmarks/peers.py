"""Prism's engine against the engines a user would pick instead, at the paper's shape, in one run.

    python -m benchmarks.peers [--rounds 3] [--out benchmarks/results]     (make bench-peers)

The model is a randomly initialised user-aware BART in the bart-base shape (d_model 768, 6+6
layers, 12 heads, ffn 3072, vocabulary 50,330), built and published with the project's own
code (export, parity, precision variants). Latency depends on the shape, not the values, so
random weights measure speed and memory; they say nothing about a variant's agreement, which
is read from the trained default model's manifest (its publish-time gate) when the store has
it. Engines, each in its own process (so each peak RSS is its own), on the same token ids:

- `hf-eager`: transformers `generate` in PyTorch eager mode (KV cache), the paper's setting;
- `prism-fp32`, `prism-int8`, `prism-fp16`: the project's runtime (`explain.onnx_backend`:
  the encoder once, the one-step decoder with its KV cache, the numpy decode loop) on each
  precision variant of the graphs;
- `ct2-fp32`, `ct2-int8`: CTranslate2 on the same weights (the user vector is zero, which
  makes the model plain BART, so CTranslate2's BART converter takes it);
- `prism-int8-lanes`, `ct2-int8-lanes`: the same int8 engines with the threads spent the
  other way: a batch run as 2 parts side by side, one thread each (`explain.lanes`;
  CTranslate2's `inter_threads=2` with sub-batches of half the batch);
- `prism-direct` and `prism-http`: the whole request path (input building, the Explainer, the
  verifier) on catalogue requests, called directly and through the real HTTP service
  (uvicorn, dynamic batching), fp32 graphs, to measure what HTTP and batching cost;
- `prism-direct-int8`, `prism-http-int8`: the same two on the int8 graphs, their gate waived
  (by the benchmark's own app over HTTP, `benchmarks.ungated_app`; random weights cannot
  pass it): what HTTP and batching cost the variant a CPU serves, and the serving process's
  speed and peak memory with int8, which is what the `peers:` line's peak RSS reports.

Inputs are `--src-tokens` token ids (default 120); every engine generates exactly
`--new-tokens` tokens (EOS banned until then), greedily, with `--threads` threads. Batch 1
runs `--b1-requests` sequences one at a time; batch 32 runs `--b32-batches` batches of 32
(32 concurrent requests over HTTP), a round's throughput is its median batch's (one batch
on this shared 2-core machine sometimes ran 1.3x slower than the next, which one timed batch
a round reported as the engine's speed). Engines run in `--rounds` rounds, the order rotated
each round; ratios are medians of per-round ratios. The last line printed is the `peers:`
summary; its b32 ratio takes each engine at its better layout of the same threads (the
faster of `prism-int8` and `prism-int8-lanes` in a round over the faster of `ct2-int8` and
`ct2-int8-lanes`), since a user runs each engine as it runs best; every pairing is in the
ratio table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cpu_label
from benchmarks.peer_engines import DIRECT_ENGINES, HTTP_ENGINES, worker
from benchmarks.peer_model import build, make_inputs
from explain import artifacts

# The int8 recipe names come from `explain.artifacts`, not `training.variants`: that module
# imports torch, and every engine's worker process imports this one (its peak RSS would carry it).

BEST_B32 = "b32 throughput, best layout of each: prism-int8 (lanes) / ct2-int8 (lanes)"
ENGINES = (
    "hf-eager",
    "prism-fp32",
    "prism-int8",
    "prism-fp16",
    "ct2-fp32",
    "ct2-int8",
    "prism-int8-lanes",
    "ct2-int8-lanes",
    "prism-direct",
    "prism-http",
    "prism-direct-int8",
    "prism-http-int8",
)


# --- the report (parent) ----------------------------------------------------------------


def _p50_ms(batch: dict[str, Any]) -> float:
    return float(np.median(batch["latencies_s"]) * 1000)


def _throughput(batch: dict[str, Any]) -> float:
    """Rows per second of a round's median batch."""
    return float(batch["rows"]) / float(np.median(batch["latencies_s"]))


def _same_tokens(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The share of sequences (b1 and b32) on which two engines' first rounds agree."""
    mine = a["batches"]["1"]["tokens"] + a["batches"]["32"]["tokens"]
    ref = b["batches"]["1"]["tokens"] + b["batches"]["32"]["tokens"]
    return float(sum(x == y for x, y in zip(mine, ref, strict=True)) / len(ref))


def summarise(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    reference = results.get("hf-eager", [])
    rows = []
    for engine, rounds in results.items():
        b1 = [_p50_ms(r["batches"]["1"]) for r in rounds]
        b32 = [_throughput(r["batches"]["32"]) for r in rounds]
        agree = None
        if reference and engine not in ("hf-eager", *DIRECT_ENGINES, *HTTP_ENGINES):
            agree = _same_tokens(rounds[0], reference[0])
        one_lane = (
            results.get(engine.removesuffix("-lanes"), []) if engine.endswith("-lanes") else []
        )
        rows.append(
            {
                "engine": engine,
                "b1_p50_ms": float(np.median(b1)),
                "b1_range_ms": [min(b1), max(b1)],
                "b32_seq_s": float(np.median(b32)),
                "b32_range": [min(b32), max(b32)],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
                "tokens_equal_hf": agree,
                # A batch split over lanes must give each row the tokens it gets in one.
                "tokens_equal_one_lane": _same_tokens(rounds[0], one_lane[0]) if one_lane else None,
                "served_variant": rounds[0].get("served_variant"),  # HTTP: what /v1/models said
            }
        )
    return rows


def ratio(
    results: dict[str, list[dict[str, Any]]], a: str, b: str, key: str
) -> tuple[float, float, float] | None:
    """Median (and range) over rounds of a/b for `key` in ("b1", "b32")."""
    if a not in results or b not in results:
        return None
    values = []
    for ra, rb in zip(results[a], results[b], strict=True):
        if key == "b1":
            values.append(_p50_ms(ra["batches"]["1"]) / _p50_ms(rb["batches"]["1"]))
        else:
            values.append(_throughput(ra["batches"]["32"]) / _throughput(rb["batches"]["32"]))
    return float(np.median(values)), min(values), max(values)


def best_ratio(
    results: dict[str, list[dict[str, Any]]], ours: Sequence[str], theirs: Sequence[str]
) -> tuple[float, float, float] | None:
    """Median (and range) over rounds of b32 throughput, the best of `ours` in the round over
    the best of `theirs` (each engine at its better thread layout: one lane or two)."""
    ours = [e for e in ours if e in results]
    theirs = [e for e in theirs if e in results]
    if not ours or not theirs:
        return None
    values = []
    for r in range(min(len(results[e]) for e in (*ours, *theirs))):
        mine = max(_throughput(results[e][r]["batches"]["32"]) for e in ours)
        peer = max(_throughput(results[e][r]["batches"]["32"]) for e in theirs)
        values.append(mine / peer)
    return float(np.median(values)), min(values), max(values)


def _agreement_of_default(store: Path, name: str) -> tuple[float, str] | None:
    """The trained default model's int8 gate: identical share and the recipe it kept."""
    from model_store.store import ModelStore, StoreError

    try:
        variant = ModelStore(store).resolve(name, "production").manifest.variants.get("int8")
    except (StoreError, FileNotFoundError):
        return None
    return (
        None
        if variant is None
        else (variant.sequences_identical, variant.recipe or artifacts.BLOCKS)
    )


def render(
    rows: list[dict[str, Any]], ratios: dict[str, Any], setup: dict[str, Any], line: str
) -> str:
    out = [f"# Peer benchmark ({setup['date']})", ""]
    out.append("Setup: " + "; ".join(f"{k}: {v}" for k, v in setup.items() if k != "date"))
    out += [
        "",
        "| engine | b1 p50 ms | b1 p50 range | b32 seq/s | b32 range | peak RSS MB "
        "| tokens = HF eager |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        agree = "n/a" if r["tokens_equal_hf"] is None else f"{r['tokens_equal_hf']:.0%}"
        if r.get("tokens_equal_one_lane") is not None:
            agree += f" ({r['tokens_equal_one_lane']:.0%} = one lane)"
        out.append(
            f"| {r['engine']} | {r['b1_p50_ms']:.0f} | {r['b1_range_ms'][0]:.0f}-"
            f"{r['b1_range_ms'][1]:.0f} | {r['b32_seq_s']:.2f} | {r['b32_range'][0]:.2f}-"
            f"{r['b32_range'][1]:.2f} | {r['peak_rss_mb']:.0f} | {agree} |"
        )
    out += ["", "| ratio (median of per-round ratios) | median | range |", "|---|---:|---:|"]
    for label, value in ratios.items():
        if value is not None:
            out.append(f"| {label} | {value[0]:.2f}x | {value[1]:.2f}-{value[2]:.2f} |")
    out += ["", line, ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--shape", choices=("bart-base", "tiny"), default="bart-base", help="tiny: for tests"
    )
    parser.add_argument("--src-tokens", type=int, default=120)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--b1-requests", type=int, default=8)
    parser.add_argument("--b32-batches", type=int, default=3, help="timed batches of 32 a round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe",
        choices=artifacts.INT8_RECIPES,
        help="the int8 recipe to measure (default: the one the default model's gate kept)",
    )
    parser.add_argument("--store", default="store", help="the default model's store (agreement)")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--work", help="reuse a built model directory (default: a temp dir)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.work), args, Path(args.result))
        return 0
    engines = [e for e in args.engines.split(",") if e]
    gate = _agreement_of_default(Path(args.store), args.name)
    # Measure the int8 recipe the trained default model serves (its gate chose it), unless
    # another is asked for (the summary then says which recipe the speed is of).
    recipe = args.recipe or (gate[1] if gate is not None else artifacts.PER_TOKEN)
    with tempfile.TemporaryDirectory(prefix="prism-peers-") as tmp:
        work = Path(args.work or tmp)
        built_file = work / "built.json"
        if built_file.exists() and json.loads(built_file.read_text()).get("recipe") != recipe:
            built_file.unlink()  # built with another int8 recipe
        if not built_file.exists():
            print("building the bart-base-shaped model (export, parity, variants) ...", flush=True)
            built_file.write_text(json.dumps(build(work, args, recipe)))
        built = json.loads(built_file.read_text())
        make_inputs(work, args, built["vocab_size"])
        results: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
        for r in range(args.rounds):
            for k in range(len(engines)):
                engine = engines[(r + k) % len(engines)]
                result = work / f"{engine}-{r}.json"
                print(f"round {r + 1}/{args.rounds}: {engine} ...", flush=True)
                command = [sys.executable, "-m", "benchmarks.peers", "--worker", engine]
                command += ["--work", str(work), "--result", str(result)]
                command += ["--threads", str(args.threads), "--new-tokens", str(args.new_tokens)]
                command += ["--b1-requests", str(args.b1_requests)]
                command += ["--b32-batches", str(args.b32_batches)]
                subprocess.run(
                    command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
                )
                results[engine].append(json.loads(result.read_text()))
    rows = summarise(results)
    by_engine = {r["engine"]: r for r in rows}
    ratios = {
        "b1 speed-up of prism-int8 vs HF eager": ratio(results, "hf-eager", "prism-int8", "b1"),
        "b1 speed-up of prism-fp32 vs HF eager": ratio(results, "hf-eager", "prism-fp32", "b1"),
        "b1 p50 prism-int8 / ct2-int8 (below 1: faster)": ratio(
            results, "prism-int8", "ct2-int8", "b1"
        ),
        "b1 p50 prism-fp32 / ct2-fp32": ratio(results, "prism-fp32", "ct2-fp32", "b1"),
        "b32 throughput prism-int8 / ct2-int8": ratio(results, "prism-int8", "ct2-int8", "b32"),
        "b32 throughput prism-fp32 / ct2-fp32": ratio(results, "prism-fp32", "ct2-fp32", "b32"),
        "b32 throughput prism-int8-lanes / ct2-int8-lanes": ratio(
            results, "prism-int8-lanes", "ct2-int8-lanes", "b32"
        ),
        "b32 throughput prism-int8-lanes / ct2-int8": ratio(
            results, "prism-int8-lanes", "ct2-int8", "b32"
        ),
        "b32 throughput prism-int8-lanes / prism-int8": ratio(
            results, "prism-int8-lanes", "prism-int8", "b32"
        ),
        "b1 p50 prism-int8-lanes / prism-int8": ratio(
            results, "prism-int8-lanes", "prism-int8", "b1"
        ),
        "b1 p50 prism-http / prism-direct (HTTP + batching)": ratio(
            results, "prism-http", "prism-direct", "b1"
        ),
        "b1 p50 prism-http-int8 / prism-direct-int8 (HTTP + batching, int8)": ratio(
            results, "prism-http-int8", "prism-direct-int8", "b1"
        ),
        "b32 throughput prism-http-int8 / ct2-int8": ratio(
            results, "prism-http-int8", "ct2-int8", "b32"
        ),
        # The peers line's: each engine at its better layout of the same 2 threads.
        BEST_B32: best_ratio(
            results, ("prism-int8", "prism-int8-lanes"), ("ct2-int8", "ct2-int8-lanes")
        ),
    }
    measured = built["variants"].get("int8", {}).get("recipe") or artifacts.BLOCKS
    if gate is None:
        agreement = "n/a"
    elif gate[1] == measured:
        agreement = f"{gate[0]:.1%}"
    else:  # the speed measured is not the recipe the default model serves: say so
        agreement = f"{gate[0]:.1%} ({gate[1]} recipe; speed measured on {measured})"

    def shown(value: tuple[float, float, float] | None) -> str:
        return "n/a" if value is None else f"{value[0]:.1f}x"

    # The target is the serving process's: the int8 service's when it ran, else the runtime's.
    serving = by_engine.get("prism-http-int8") or by_engine.get("prism-int8", {})
    serving_rss = serving.get("peak_rss_mb", float("nan"))
    line = (
        f"peers: b1 speed-up vs HF eager {shown(ratios['b1 speed-up of prism-int8 vs HF eager'])}; "
        f"b32 throughput vs CTranslate2 int8 "
        f"{shown(ratios[BEST_B32] or ratios['b32 throughput prism-int8 / ct2-int8'])}; "
        f"b1 p50 vs CTranslate2 int8 "
        f"{shown(ratios['b1 p50 prism-int8 / ct2-int8 (below 1: faster)'])}; "
        f"peak RSS {serving_rss:.0f} MB; "
        f"int8 agreement {agreement}"
    )
    setup = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": f"random user-aware BART, {args.shape} shape "
        + ("(d_model 768, 6+6 layers, " if args.shape == "bart-base" else "(")
        + f"vocab {built['vocab_size']}), parity "
        + (
            f"passed ({built.get('parity_ties', 0)} rows parted at near-exact ties)"
            if built["parity"]
            else f"FAILED ({built.get('parity_mismatches')} differ)"
        ),
        "inputs": f"{args.src_tokens} tokens (HTTP/direct: catalogue requests, 12-film histories)",
        "generation": f"exactly {args.new_tokens} new tokens, greedy",
        "batches": (
            f"b1 x {args.b1_requests} sequential; b32 x {args.b32_batches} a round, the median"
            " (32 concurrent over HTTP)"
        ),
        "threads": args.threads,
        "rounds": f"{args.rounds}, order rotated",
        "cpu": cpu_label(),
        "int8": f"recipe {measured}",
        "int8 agreement": "trained default model's publish-time gate"
        + (f" (recipe {gate[1]})" if gate is not None else " (no default model in the store)"),
    }
    report = render(rows, ratios, setup, line)
    print(report)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    (out_dir / f"peers-{stamp}.md").write_text(report)
    (out_dir / f"peers-{stamp}.json").write_text(
        json.dumps({"setup": setup, "rows": rows, "ratios": ratios, "built": built}, indent=2)
    )
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
