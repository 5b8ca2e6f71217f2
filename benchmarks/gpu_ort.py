"""ONNX Runtime's part of the GPU check (`benchmarks.gpu_check`), run in a process of its own
on CUDA so that the GPU memory it reports is ONNX Runtime's alone (this module never imports
PyTorch, whose context and cache would otherwise be counted too).

    python -m benchmarks.gpu_ort --onnx-dir DIR --provider cuda --variants fp32,fp16 \
        --users USERS.npy --batches 1,32 --input-tokens 96 --new-tokens 32 --repeats 5 \
        --json OUT.json [--store STORE --name NAME] [--shaped-from STORE --name NAME]

For each variant: p50/p95 per batch of the project's static decode (`OnnxSeq2Seq`), its
tokens (the parent compares them with PyTorch's) and the GPU memory the process added (NVML:
the device's used memory over what it was before the first session, and this process's own
figure where NVML lists processes). A variant that fails is reported with its error, and the
others still run. With `--store`, the published model as the service loads it
(`load_onnx_explainer`) explains requests built from the project's catalogue on this
provider in each variant: the served sentences against CPU fp32's, and a running batch
(rows joining and leaving, `explain.continuous`) against the static batch. With
`--shaped-from`, these graphs are served with that store's tokenizer and their first pass is
timed in a static batch and in a running batch (`benchmarks.gpu_served`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.gpu_served import running_check, served_check, shaped_explainer
from benchmarks.gpu_timing import error_row, timed, timing_row
from explain import artifacts as spec

GEN_IDS = {
    "decoder_start_token_id": 2,
    "forced_bos_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}


def synthetic_inputs(
    batch: int, length: int, vocab: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, mask and user-table rows for `batch` rows of `length` tokens; every other
    row is an unknown user (row 0 of the table is the zero vector)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, min(vocab, 3000), size=(batch, length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = np.ones_like(ids)
    rows = np.array([k % 2 * (k + 1) for k in range(batch)], dtype=np.int64)
    return ids, mask, rows


def time_generate(
    backend: Any,
    user_table: np.ndarray,
    *,
    batch: int,
    length: int,
    vocab: int,
    new_tokens: int,
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    vector_type: Any = np.float32,
) -> tuple[list[float], list[list[int]]]:
    """`backend.generate` (ONNX Runtime's or PyTorch's) timed on the synthetic batch of
    `batch` rows, exactly `new_tokens` each; the times and each row's greedy tokens."""
    from explain.decoding import DecodeRequest
    from explain.onnx_backend import EncodedBatch

    ids, mask, users = synthetic_inputs(batch, length, vocab, seed=batch)
    encoded = EncodedBatch(ids, mask, user_table[users].astype(vector_type))
    request = DecodeRequest(
        max_new_tokens=[new_tokens] * batch, banned=[()] * batch, min_new_tokens=new_tokens
    )
    result: list[Any] = []

    def run() -> None:
        result[:] = [backend.generate(encoded, request)]

    times = timed(run, repeats, sync)
    return times, [c[0] for c in result[0].decoded.candidates]


class GpuMemory:
    """NVML's view of GPU 0: the device's used memory and this process's own figure (which
    NVML does not report inside some sandboxes). Everything is None without NVML."""

    def __init__(self) -> None:
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            self._handle = None
        self.baseline = self.used_mb()

    def used_mb(self) -> float | None:
        if self._handle is None:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used) / 2**20
        except Exception:
            return None

    def added_mb(self) -> float | None:
        """The device's used memory over what it was when this object was made."""
        used = self.used_mb()
        return None if used is None or self.baseline is None else used - self.baseline

    def process_mb(self) -> float | None:
        if self._handle is None:
            return None
        import os

        try:
            for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory:
                    return float(proc.usedGpuMemory) / 2**20
        except Exception:
            return None
        return None


def measure_ort(
    label: str,
    onnx_dir: Path,
    *,
    provider: str,
    variants: Sequence[str],
    user_table: np.ndarray,
    batches: Sequence[int],
    length: int,
    new_tokens: int,
    repeats: int,
    memory: GpuMemory | None = None,
) -> list[dict[str, Any]]:
    """One row per variant and batch (`tokens`: each row's greedy tokens)."""
    from explain.decoding import GenerationIds
    from explain.onnx_backend import OnnxSeq2Seq
    from explain.session import OnnxSession

    onnx = spec.OnnxSpec.load(onnx_dir)
    rows: list[dict[str, Any]] = []
    for variant in variants:
        engine = f"ort-{provider}-{variant}"
        try:
            names = spec.variant_files(variant)
            enc = OnnxSession(onnx_dir / names[0], provider=provider)  # type: ignore[arg-type]
            dec = OnnxSession(onnx_dir / names[1], provider=provider)  # type: ignore[arg-type]
            backend = OnnxSeq2Seq(enc, dec, onnx, GenerationIds.from_mapping(GEN_IDS))
            engine += "-iobinding" if dec.io_binding else ""
            for batch in batches:
                times, tokens = time_generate(
                    backend,
                    user_table,
                    batch=batch,
                    length=length,
                    vocab=onnx.vocab_size,
                    new_tokens=new_tokens,
                    repeats=repeats,
                )
                rows.append(
                    timing_row(
                        label,
                        engine,
                        batch,
                        times,
                        gpu_added_mb=memory.added_mb() if memory else None,
                        nvml_process_mb=memory.process_mb() if memory else None,
                        tokens=tokens,
                    )
                )
            del backend, enc, dec
        except Exception as error:  # reported, and the other variants still run
            rows.append(error_row(label, engine, error))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-dir", type=Path, required=True)
    parser.add_argument("--label", default="model")
    parser.add_argument("--provider", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--variants", default="fp32,fp16")
    parser.add_argument("--users", type=Path, required=True, help="the user table (.npy)")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--input-tokens", type=int, default=96)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--served-requests", type=int, default=48)
    parser.add_argument(
        "--shaped-from",
        type=Path,
        help="a store whose published model lends these graphs its tokenizer",
    )
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    memory = GpuMemory() if args.provider == "cuda" else None
    variants = args.variants.split(",")
    rows = measure_ort(
        args.label,
        args.onnx_dir,
        provider=args.provider,
        variants=variants,
        user_table=np.load(args.users),
        batches=[int(b) for b in args.batches.split(",")],
        length=args.input_tokens,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        memory=memory,
    )
    result: dict[str, Any] = {"rows": rows, "providers": ort.get_available_providers()}
    if args.store is not None:
        result["served"] = served_check(
            args.store, args.name, args.provider, variants, args.served_requests
        )
    if args.shaped_from is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as work:
            try:
                explainer = shaped_explainer(
                    args.onnx_dir,
                    args.shaped_from,
                    args.name,
                    np.load(args.users),
                    args.provider,
                    Path(work),
                )
                result["running"] = running_check(explainer, args.served_requests, args.repeats)
            except Exception as error:
                result["running"] = {"error": f"{type(error).__name__}: {error}"}
    args.json.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
