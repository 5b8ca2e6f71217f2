"""The session helpers that need no graph: shared, memory-mapped `.npy` tables."""

from pathlib import Path

import numpy as np

from explain.session import shared_initializers


def _mapped_file(address: int) -> str | None:
    """The file whose mapping holds `address` in this process (Linux /proc)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5] if len(fields) > 5 else None
    return None


def test_shared_initializers_are_the_files_own_pages(tmp_path):
    table = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.save(tmp_path / "t.npy", table)
    [(name, value)] = shared_initializers({"shared.t": tmp_path / "t.npy"}).items()
    assert name == "shared.t" and np.array_equal(value.numpy(), table)
    # the value ORT gets points into the file's mapping, not into a private copy
    assert _mapped_file(value.data_ptr()) == str(tmp_path / "t.npy")
