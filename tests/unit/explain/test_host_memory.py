"""The heap bound (`explain.host_memory`), measured in a fresh process."""

import subprocess
import sys

_HEAP_PROBE = """
import sys
from pathlib import Path
import numpy as np
from explain.host_memory import bound_heap_retention

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "bounded":
    bound_heap_retention()
# A freed 24 MiB block raises glibc's default threshold to 24 MiB: the 8 MiB blocks that
# follow come from the heap, and the heap keeps what is freed below its live top.
big = np.ones(24 << 18, dtype=np.float32)
del big
before = rss_mb()
blocks, pins = [], []
for _ in range(16):  # each block with a small live one above it, as a decode's arrays are
    blocks.append(np.ones(2 << 20, dtype=np.float32))
    pins.append(np.ones(1 << 12, dtype=np.float32))
del blocks
print(rss_mb() - before)
"""


def test_bounded_heap_returns_large_freed_blocks_to_the_os():

    def grown(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip())

    # 16 blocks of 8 MiB: 128 MiB touched and freed
    assert grown("bounded") < 16
    assert grown("default") > 64  # the probe does show the retention it guards against
