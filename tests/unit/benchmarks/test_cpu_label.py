"""Every benchmark result names the vector extensions its int8 kernels ran on."""

import platform

from benchmarks import cpu_label

CPUINFO = """processor	: 0
flags		: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni
processor	: 1
flags		: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni
"""


def test_the_label_names_the_kernel_flags_the_cpu_shows(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    machine = platform.processor() or platform.machine()
    assert cpu_label(info) == f"{machine} (avx2 fma avx512f avx512_vnni)"
    info.write_text(CPUINFO.replace(" avx512f avx512bw avx512_vnni", ""))
    assert cpu_label(info) == f"{machine} (avx2 fma)"


def test_a_cpu_without_them_or_without_cpuinfo_still_gets_a_label(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor	: 0\nflags		: fpu neon asimd\n")
    assert "none of avx2" in cpu_label(info)
    assert cpu_label(tmp_path / "missing") == (platform.processor() or platform.machine())
