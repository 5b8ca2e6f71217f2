"""The GPU check's report (`benchmarks.gpu_check`): the results as a markdown table, and in
words what the run could and could not measure, against the paper's latency and memory."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import torch

PAPER_MS, PAPER_GB = 190.0, 1.91  # the paper's Prism student: latency and GPU memory


def findings(results: list[dict[str, Any]]) -> list[str]:
    """What this run could and could not measure, in words, and the paper comparison."""
    lines = []
    cuda = torch.cuda.is_available()
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if not cuda:
        lines.append("no CUDA device: only CPU rows were measured; nothing here speaks for a GPU")
    elif not ort_cuda:
        lines.append(
            "PyTorch CUDA measured (fp32 and fp16); this onnxruntime is CPU-only, so the served "
            "fp16 ONNX variant could NOT be measured on the GPU (install onnxruntime-gpu)"
        )
    for result in results:
        for row in result["rows"]:
            if row["batch"] == 1 and row["engine"] in ("torch-cuda-float16", "ort-cuda-fp16"):
                memory = row.get("peak_alloc_mb") or row.get("nvml_process_mb")
                shown = "n/a" if memory is None else f"{memory / 1024:.2f} GB"
                lines.append(
                    f"{result['model']}, {row['engine']}, b1: p50 {row['p50_ms']:.0f} ms "
                    f"(paper {PAPER_MS:.0f} ms), GPU memory {shown} (paper {PAPER_GB} GB)"
                )
        for row in result["rows"]:
            if row["batch"] == 32 and row["engine"].endswith(("float16", "fp16")):
                lines.append(
                    f"{result['model']}, {row['engine']}, b32: "
                    f"{32 / (row['p50_ms'] / 1000):.1f} sequences/s"
                )
    return lines


def render(results: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    lines = ["# GPU check", "", "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items()), ""]
    lines += [
        "| model | engine | batch | p50 ms | p95 ms | peak alloc MB | NVML process MB | tokens = torch CUDA fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(value: Any, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for result in results:
        for r in result["rows"]:
            lines.append(
                f"| {r['model']} ({result['parameters'] / 1e6:.1f}M) | {r['engine']} | {r['batch']} | {fmt(r['p50_ms'])} "
                f"| {fmt(r['p95_ms'])} | {fmt(r.get('peak_alloc_mb'))} | {fmt(r.get('nvml_process_mb'))} "
                f"| {fmt(r.get('parity_vs_torch_cuda_fp32'), 3)} |"
            )
    return "\n".join(lines) + "\n"
