"""The GPU check's report (`benchmarks.gpu_check`): the results as a markdown table, and in
words what the run could and could not measure, against the paper's latency and memory."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import torch

PAPER_MS, PAPER_GB = 190.0, 1.91  # the paper's Prism student: latency and GPU memory


def _memory_mb(row: dict[str, Any]) -> float | None:
    """The row's GPU memory: PyTorch's peak allocation, else what ONNX Runtime's process
    added to the device, else NVML's figure for the process."""
    for key in ("peak_alloc_mb", "gpu_added_mb", "nvml_process_mb"):
        if row.get(key) is not None:
            return float(row[key])
    return None


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
            if row.get("error"):
                lines.append(f"{result['model']}, {row['engine']}: NOT measured ({row['error']})")
        for row in result["rows"]:
            if row.get("batch") == 1 and row["engine"].startswith(
                ("torch-cuda-float16", "ort-cuda-fp16")
            ):
                memory = _memory_mb(row)
                shown = "n/a" if memory is None else f"{memory / 1024:.2f} GB"
                lines.append(
                    f"{result['model']}, {row['engine']}, b1: p50 {row['p50_ms']:.0f} ms "
                    f"(paper {PAPER_MS:.0f} ms), GPU memory {shown} (paper {PAPER_GB} GB)"
                )
        for row in result["rows"]:
            if row.get("batch") == 32 and row["engine"].startswith(
                ("torch-cuda-float16", "ort-cuda-fp16")
            ):
                lines.append(
                    f"{result['model']}, {row['engine']}, b32: "
                    f"{32 / (row['p50_ms'] / 1000):.1f} sequences/s"
                )
        served = result.get("served") or {}
        for row in served.get("rows", []):
            if row.get("error"):
                lines.append(f"{served['model']}, {row['engine']}: NOT run ({row['error']})")
                continue
            n = served["requests"]
            lines.append(
                f"{served['model']}, {row['engine']}: {row['same_text_as_cpu_fp32']}/{n} served "
                f"sentences as on CPU fp32; running batch = static batch for "
                f"{row['running_same_as_static']}/{n}; {n} requests explained in "
                f'{row["explain_s"]:.2f} s; e.g. "{row["example"]}"'
            )
        running = result.get("running") or {}
        if running.get("error"):
            lines.append(f"{result['model']}, running batch on CUDA: NOT run ({running['error']})")
        elif running:
            shown = "; ".join(
                f"{row['engine']} {row['p50_ms']:.0f} ms (in the decoder's run "
                f"{row['decoder_ms']:.0f} ms, the encoder's {row['encoder_ms']:.0f} ms)"
                + (
                    f" ({row['same_as_static']}/{running['requests']} as static, "
                    f"{row['uploads']} uploads in {row['steps']} steps)"
                    if "uploads" in row
                    else ""
                )
                for row in running["rows"]
            )
            lines.append(
                f"{result['model']}, {running['model']}, {running['requests']} served requests "
                f"(the published model's tokenizer): {shown}"
            )
    return lines


def render(results: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    lines = ["# GPU check", "", "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items()), ""]
    lines += [
        "| model | engine | batch | p50 ms | p95 ms | peak alloc MB | ORT process added MB | NVML process MB | tokens = torch CUDA fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(value: Any, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for result in results:
        for r in result["rows"]:
            if r.get("error"):
                continue  # in the findings, with the error
            lines.append(
                f"| {r['model']} ({result['parameters'] / 1e6:.1f}M) | {r['engine']} | {r['batch']} | {fmt(r['p50_ms'])} "
                f"| {fmt(r['p95_ms'])} | {fmt(r.get('peak_alloc_mb'))} | {fmt(r.get('gpu_added_mb'))} "
                f"| {fmt(r.get('nvml_process_mb'))} | {fmt(r.get('parity_vs_torch_cuda_fp32'), 3)} |"
            )
    return "\n".join(lines) + "\n"
