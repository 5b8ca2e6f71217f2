"""The GPU check: latency, peak GPU memory and parity, in one short run (a few minutes).

    python -m benchmarks.gpu_check --out OUT_DIR [--store store --name prism-movies]

Two models: the published default (when the store is there) and a randomly initialised
user-aware BART in the paper's bart-base shape (d_model 768, 6+6 layers, vocab 50k; random
weights at init_std 0.2 generate real sequences, and latency does not depend on the values).
For each, on the same inputs:

- PyTorch eager `generate` (KV cache) on CUDA in fp32 and fp16: p50/p95 per batch, peak
  memory (`torch.cuda.max_memory_allocated` and this process's NVML figure);
- ONNX Runtime on CPU (and on CUDA with IO binding when this ORT build has the provider;
  `session.get_providers()` is checked, since ORT falls back to CPU silently);
- parity: ORT greedy tokens against PyTorch CUDA fp32 greedy tokens.

Output lengths are fixed (EOS is banned until `max_new_tokens`) so every engine generates the
same number of tokens. Without CUDA the script still runs and says so (the GPU rows are
skipped), which is how it is tested on CPU machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import BartConfig, BartForConditionalGeneration

from benchmarks import cpu_label
from benchmarks.gpu_report import findings, render
from explain import artifacts as spec
from training.export import export_onnx
from training.modeling import UserAwareBart
from training.variants import build_variant

GEN_IDS = {
    "decoder_start_token_id": 2,
    "forced_bos_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}


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


def _inputs(
    batch: int, length: int, vocab: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, min(vocab, 3000), size=(batch, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = np.ones_like(ids)
    rows = np.array([k % 2 * (k + 1) for k in range(batch)], dtype=np.int64)  # known / unknown
    return ids, mask, rows


def _timed(run: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> list[float]:
    run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _nvml_process_mb() -> float | None:
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                return float(proc.usedGpuMemory) / 2**20
    except Exception:
        return None
    return None


def check_model(
    label: str,
    model: UserAwareBart,
    *,
    batches: list[int],
    length: int,
    new_tokens: int,
    repeats: int,
) -> dict[str, Any]:
    from explain.decoding import DecodeRequest, GenerationIds
    from explain.onnx_backend import EncodedBatch, OnnxSeq2Seq
    from explain.session import OnnxSession
    from training.torch_backend import TorchSeq2Seq

    vocab = int(model.bart.config.vocab_size or 0)
    cuda = torch.cuda.is_available()
    rows: list[dict[str, Any]] = []
    user_table = model.user_embeddings.weight.detach().float().numpy()
    reference: dict[int, list[list[int]]] = {}

    def inputs(batch: int) -> tuple[EncodedBatch, DecodeRequest]:
        ids, mask, users = _inputs(batch, length, vocab, seed=batch)
        request = DecodeRequest(
            max_new_tokens=[new_tokens] * batch, banned=[()] * batch, min_new_tokens=new_tokens
        )
        return EncodedBatch(ids, mask, user_table[users]), request

    for batch in batches:
        encoded, request = inputs(batch)
        if cuda:
            for dtype in (torch.float32, torch.float16):
                backend = TorchSeq2Seq(model.to("cuda", dtype=dtype), GEN_IDS)
                if dtype == torch.float16:
                    encoded_dev = EncodedBatch(
                        encoded.input_ids,
                        encoded.attention_mask,
                        encoded.user_vectors.astype(np.float16),
                    )
                else:
                    encoded_dev = encoded
                torch.cuda.reset_peak_memory_stats()
                out: list[Any] = []

                def run(
                    b: TorchSeq2Seq = backend,
                    e: EncodedBatch = encoded_dev,
                    o: list[Any] = out,
                    q: DecodeRequest = request,
                ) -> None:
                    o[:] = [b.generate(e, q)]

                times = _timed(run, repeats, torch.cuda.synchronize)
                if dtype == torch.float32:
                    reference[batch] = [c[0] for c in out[0].decoded.candidates]
                rows.append(
                    {
                        "model": label,
                        "engine": f"torch-cuda-{str(dtype).split('.')[-1]}",
                        "batch": batch,
                        "p50_ms": statistics.median(times),
                        "p95_ms": float(np.percentile(times, 95)),
                        "peak_alloc_mb": torch.cuda.max_memory_allocated() / 2**20,
                        "nvml_process_mb": _nvml_process_mb(),
                    }
                )
            model = model.to("cpu", dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(tmp)
        export_onnx(model, onnx_dir)
        onnx = spec.OnnxSpec.load(onnx_dir)
        providers = ["cpu"] + (
            ["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else []
        )
        for provider in providers:
            # fp32 everywhere; the fp16 variant (`training.variants`) where it is meant to run.
            for variant in (spec.FP32, spec.FP16) if provider == "cuda" else (spec.FP32,):
                if variant != spec.FP32:
                    build_variant(variant, onnx_dir)
                names = spec.variant_files(variant)
                enc = OnnxSession(onnx_dir / names[0], provider=provider)  # type: ignore[arg-type]
                dec = OnnxSession(onnx_dir / names[1], provider=provider)  # type: ignore[arg-type]
                ort_backend = OnnxSeq2Seq(enc, dec, onnx, GenerationIds.from_mapping(GEN_IDS))
                for batch in batches:
                    encoded, request = inputs(batch)
                    result: list[Any] = []

                    def run_ort(
                        b: OnnxSeq2Seq = ort_backend,
                        e: EncodedBatch = encoded,
                        r: list[Any] = result,
                        q: DecodeRequest = request,
                    ) -> None:
                        r[:] = [b.generate(e, q)]

                    times = _timed(run_ort, repeats, lambda: None)
                    agree = None
                    if batch in reference:
                        tokens = [c[0] for c in result[0].decoded.candidates]
                        agree = sum(a == b for a, b in zip(tokens, reference[batch], strict=True))
                        agree /= batch
                    rows.append(
                        {
                            "model": label,
                            "engine": f"ort-{enc.device}-{variant}"
                            + ("-iobinding" if dec.io_binding else ""),
                            "batch": batch,
                            "p50_ms": statistics.median(times),
                            "p95_ms": float(np.percentile(times, 95)),
                            "nvml_process_mb": _nvml_process_mb() if enc.device == "cuda" else None,
                            "parity_vs_torch_cuda_fp32": agree,
                        }
                    )
    return {"model": label, "parameters": sum(p.numel() for p in model.parameters()), "rows": rows}


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
            )
        )
    if not args.skip_bart_base:
        results.append(
            check_model(
                "bart-base shape, random",
                bart_base_shaped(),
                batches=batches,
                length=args.input_tokens,
                new_tokens=args.new_tokens,
                repeats=args.repeats,
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
