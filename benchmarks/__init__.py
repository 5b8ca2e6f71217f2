"""Benchmarks: each module runs with `python -m benchmarks.<name>` and writes its tables to
`benchmarks/results/`."""

from __future__ import annotations

import platform
from pathlib import Path

# The vector extensions ONNX Runtime's and CTranslate2's int8 and fp32 kernels pick between:
# the same build ran the integer GEMM about 3x faster on a host showing AVX-512 VNNI than on
# one showing AVX2 only (README, *How far from the hardware*), so every result names them.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_label(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The machine and which of `KERNEL_FLAGS` its CPU shows, e.g. `x86_64 (avx2 fma)`."""
    machine = platform.processor() or platform.machine()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return machine
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    shown = [f for f in KERNEL_FLAGS if f in flags]
    return f"{machine} ({' '.join(shown) or 'none of ' + ', '.join(KERNEL_FLAGS)})"
