"""The session helpers that need no graph: memory-mapped `.npy` tables."""

import numpy as np
import pytest

from explain.session import map_npy, shared_initializers


@pytest.mark.parametrize("order", ["C", "F"])
def test_map_npy_reads_what_numpy_wrote_without_copying_it(tmp_path, order):
    table = np.asarray(np.arange(24, dtype=np.int8).reshape(4, 6), order=order)
    path = tmp_path / "table.npy"
    np.save(path, table)
    mapped = map_npy(path)
    assert mapped.dtype == table.dtype and np.array_equal(mapped, table)
    assert not mapped.flags.writeable and not mapped.flags.owndata  # the file's pages


def test_shared_initializers_are_the_files_values(tmp_path):
    table = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.save(tmp_path / "t.npy", table)
    [(name, value)] = shared_initializers({"shared.t": tmp_path / "t.npy"}).items()
    assert name == "shared.t" and np.array_equal(value.numpy(), table)
