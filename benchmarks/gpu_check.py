"""The GPU check: latency, peak GPU memory and parity, in one short run (a few minutes).

    python -m benchmarks.gpu_check --out OUT_DIR [--store store --name prism-movies]

Two models: the published default (when the store is there) and a randomly initialised
user-aware BART in the paper's bart-base shape (d_model 768, 6+6 layers, vocab 50k; random
weights at init_std 0.2 generate real sequences, and latency does not depend on the values).
For each, on the same inputs:

- PyTorch eager `generate` (KV cache) on CUDA in fp32 and fp16: p50/p95 per batch, peak
  memory (`torch.cuda.max_memory_allocated` and this process's NVML figure);
- ONNX Runtime on CPU; on CUDA (fp32 and the fp16 variant, IO binding) when this ORT build
  has the provider (`session.get_providers()` is checked, since ORT falls back to CPU
  silently), in a child process (`benchmarks.gpu_ort`) whose GPU memory is ONNX Runtime's
  alone; for the published model also the served path there: its sentences against CPU
  fp32's, and rows joining a running batch against the static batch;
- parity: ORT greedy tokens against PyTorch CUDA fp32 greedy tokens.

An engine that fails is reported with its error and the others still run.

Output lengths are fixed (EOS is banned until `max_new_tokens`) so every engine generates the
same number of tokens. Without CUDA the script still runs and says so (the GPU rows are
skipped), which is how it is tested on CPU machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import BartConfig, BartForConditionalGeneration

from benchmarks import cpu_label
from benchmarks.gpu_ort import GEN_IDS, GpuMemory, measure_ort, time_generate
from benchmarks.gpu_report import findings, render
from benchmarks.gpu_timing import error_row, timing_row
from explain import artifacts as spec
from training.export import export_onnx
from training.modeling import UserAwareBart
from training.variants import build_variant


def bart_base_shaped(num_users: int = 1000, seed: int = 0) -> UserAwareBart:
    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=50_330,  # bart-base's 50,265 plus the slot tokens
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        max_position_embeddings=1024,
        init_std=0.2,
        dropout=0.0,
        forced_eos_token_id=None,
    )
    return UserAwareBart(BartForConditionalGeneration(config), num_users).eval()


def torch_rows(
    label: str,
    model: UserAwareBart,
    user_table: np.ndarray,
    *,
    batches: list[int],
    length: int,
    new_tokens: int,
    repeats: int,
) -> tuple[list[dict[str, Any]], dict[int, list[list[int]]]]:
    """PyTorch eager `generate` on CUDA in fp32 and fp16, and the fp32 tokens per batch."""
    from training.torch_backend import TorchSeq2Seq

    vocab = int(model.bart.config.vocab_size or 0)
    rows: list[dict[str, Any]] = []
    reference: dict[int, list[list[int]]] = {}
    memory = GpuMemory()
    for dtype in (torch.float32, torch.float16):
        engine = f"torch-cuda-{str(dtype).split('.')[-1]}"
        try:
            backend = TorchSeq2Seq(model.to("cuda", dtype=dtype), GEN_IDS)
            for batch in batches:
                torch.cuda.reset_peak_memory_stats()
                times, tokens = time_generate(
                    backend,
                    user_table,
                    batch=batch,
                    length=length,
                    vocab=vocab,
                    new_tokens=new_tokens,
                    repeats=repeats,
                    sync=torch.cuda.synchronize,
                    vector_type=np.float16 if dtype == torch.float16 else np.float32,
                )
                if dtype == torch.float32:
                    reference[batch] = tokens
                rows.append(
                    timing_row(
                        label,
                        engine,
                        batch,
                        times,
                        peak_alloc_mb=torch.cuda.max_memory_allocated() / 2**20,
                        nvml_process_mb=memory.process_mb(),
                    )
                )
        except Exception as error:  # reported; the other engines still run
            rows.append(error_row(label, engine, error))
    model.to("cpu", dtype=torch.float32)
    torch.cuda.empty_cache()
    return rows, reference


def ort_cuda_rows(
    label: str, onnx_dir: Path, user_table: np.ndarray, args: list[str], store: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ONNX Runtime on CUDA (fp32 and the fp16 variant) in a child process
    (`benchmarks.gpu_ort`), so its GPU memory is its own; and what `store` asks for there:
    the published model's served path (`--store`), or these graphs served with its tokenizer
    in a static and a running batch (`--shaped-from`)."""
    try:
        build_variant(spec.FP16, onnx_dir)
    except Exception as error:
        return [error_row(label, "ort-cuda-fp16", error)], {}
    users = onnx_dir / "users.npy"
    np.save(users, user_table)
    out = onnx_dir / "ort_cuda.json"
    command = [sys.executable, "-m", "benchmarks.gpu_ort", "--onnx-dir", str(onnx_dir)]
    command += ["--label", label, "--provider", "cuda", "--variants", "fp32,fp16"]
    command += ["--users", str(users), "--json", str(out), *args, *store]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    for line in done.stderr.strip().splitlines()[-20:]:  # the child's warnings, for the log
        print(f"  gpu_ort: {line}", flush=True)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        failure = RuntimeError(f"benchmarks.gpu_ort exited {done.returncode}: {' | '.join(tail)}")
        return [error_row(label, "ort-cuda", failure)], {}
    result = json.loads(out.read_text())
    return result["rows"], {k: result[k] for k in ("served", "running") if k in result}


def check_model(
    label: str,
    model: UserAwareBart,
    *,
    batches: list[int],
    length: int,
    new_tokens: int,
    repeats: int,
    store: list[str] | None = None,
) -> dict[str, Any]:
    """Every engine on `model`: PyTorch on CUDA, ONNX Runtime on CPU and (where this build
    has the provider) on CUDA; each ONNX row's token agreement with PyTorch CUDA fp32.
    `store` (`--store DIR --name NAME` or `--shaped-from DIR --name NAME`) adds the served
    checks on CUDA (`benchmarks.gpu_served`)."""
    user_table = model.user_embeddings.weight.detach().float().numpy()
    parameters = sum(p.numel() for p in model.parameters())
    rows: list[dict[str, Any]] = []
    reference: dict[int, list[list[int]]] = {}
    extras: dict[str, Any] = {}
    shape = dict(batches=batches, length=length, new_tokens=new_tokens, repeats=repeats)
    if torch.cuda.is_available():
        rows, reference = torch_rows(label, model, user_table, **shape)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(tmp)
        export_onnx(model, onnx_dir)
        rows += measure_ort(
            label,
            onnx_dir,
            provider="cpu",
            variants=[spec.FP32],
            user_table=user_table,
            batches=batches,
            length=length,
            new_tokens=new_tokens,
            repeats=repeats,
        )
        if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
            child = ["--batches", ",".join(map(str, batches)), "--input-tokens", str(length)]
            child += ["--new-tokens", str(new_tokens), "--repeats", str(repeats)]
            cuda_rows, extras = ort_cuda_rows(label, onnx_dir, user_table, child, store or [])
            rows += cuda_rows
    for row in rows:
        tokens = row.pop("tokens", None)
        if tokens is not None and row["batch"] in reference:
            same = sum(a == b for a, b in zip(tokens, reference[row["batch"]], strict=True))
            row["parity_vs_torch_cuda_fp32"] = same / row["batch"]
    return {"model": label, "parameters": parameters, "rows": rows, **extras}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--input-tokens", type=int, default=96)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-bart-base", action="store_true")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    setup = {
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else "none (GPU rows skipped)",
        "onnxruntime": f"{ort.__version__} {ort.get_available_providers()}",
        "cpu": cpu_label(),
        "input_tokens": args.input_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
    }
    print(json.dumps(setup, indent=2), flush=True)
    results = []
    store_model = Path(args.store) / args.name
    if store_model.exists():
        from model_store.store import ModelStore

        version = ModelStore(Path(args.store)).resolve(args.name, "production")
        model = UserAwareBart.load(version.path)
        results.append(
            check_model(
                f"{args.name}@{version.version}",
                model,
                batches=batches,
                length=args.input_tokens,
                new_tokens=args.new_tokens,
                repeats=args.repeats,
                store=["--store", args.store, "--name", args.name],
            )
        )
    if not args.skip_bart_base:
        shaped = ["--shaped-from", args.store, "--name", args.name] if store_model.exists() else []
        results.append(
            check_model(
                "bart-base shape, random",
                bart_base_shaped(),
                batches=batches,
                length=args.input_tokens,
                new_tokens=args.new_tokens,
                repeats=args.repeats,
                store=shaped,
            )
        )
    table = (
        render(results, setup) + "\n" + "\n".join(f"- {line}" for line in findings(results)) + "\n"
    )
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text(table)
    (out / "gpu_check.json").write_text(json.dumps({"setup": setup, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
