"""The process's host memory: what glibc keeps after the decode's large arrays are freed
(no-ops where there is no glibc, or no such function), the tables every session shares
from memory-mapped files, and the one ONNX Runtime arena every CPU session allocates from."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

logger = logging.getLogger(__name__)


def _libc(function: str) -> Any | None:
    """A glibc function by name, or None where there is no such C library (or function)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Return the heap pages freed so far to the OS (glibc `malloc_trim`; elsewhere a no-op)."""
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


# glibc's `mallopt` parameter for the size from which an allocation is its own mapping.
M_MMAP_THRESHOLD = -3
HEAP_MAPPING_BYTES = 1 << 20
_heap_bounded = threading.Event()


def bound_heap_retention() -> None:
    """Give every host allocation of 1 MiB or more its own mapping, returned to the OS when it
    is freed (glibc `mallopt(M_MMAP_THRESHOLD)`; elsewhere a no-op). Once per process.

    By default glibc raises that threshold to the size of each large block freed (up to 32
    MiB), after which the decode's arrays (a KV cache, cross keys and values, logits: a few
    MiB each) come from the heap, whose freed pages the process keeps. The int8 service at
    bart-base shape (2 threads, three rounds of 32 concurrent 200-token requests, two
    alternating runs of each, 2026-12-03) peaked at 693-695 MB in the first round either
    way, then at 715-778 MB in later rounds and held 469-730 MB idle by default, against
    693-700 MB in every round and 399-406 MB idle with the fixed threshold; the static
    token-id path's speed did not move beyond the machine's noise."""
    if _heap_bounded.is_set():
        return
    _heap_bounded.set()
    mallopt = _libc("mallopt")
    if mallopt is not None and mallopt(M_MMAP_THRESHOLD, HEAP_MAPPING_BYTES) != 1:
        logger.warning("could not set the heap's mapping threshold (mallopt)")


def shared_initializers(files: Mapping[str, Path]) -> dict[str, ort.OrtValue]:
    """Initializers to share between sessions, by name, from `.npy` files memory-mapped
    read-only: the pages are the file's, so every process serving the model shares them too.

    The mapping is populated at load (`populate`), not by the first requests' lookups: the
    kernel maps page-cache folios whole, so one request of 120 random token ids brought 73 MB
    of a 154 MB float32 table in (`madvise(MADV_RANDOM)` changed nothing; one reason the int8
    variant's table is int8, 38.7 MB at bart-base), and those page faults were the requests'
    latency: at bart-base (int8, 2 threads, AVX2 host, 10 sequential requests of new random
    ids, two processes each) the encoder took 89-162 ms per request on a cold mapping
    against 68-110 ms on a populated one, and touching the int8 table took 25-28 ms at load,
    for 5 MB more RSS after the ten requests. The price: the whole table is resident from
    the start. In two `bench-peers` runs before and after, the fp32 request-path processes
    (catalogue requests use few of the 154 MB table's rows) peaked 122-125 MB higher and the
    int8 service 19 MB higher; the fp32 runtime fed random ids, which touch nearly every
    page anyway, peaked at 1,024 and 1,023 MB."""
    tables = {name: np.load(path, mmap_mode="r") for name, path in files.items()}
    for table in tables.values():
        populate(table)
    return {name: ort.OrtValue.ortvalue_from_numpy(table) for name, table in tables.items()}


PAGE_BYTES = 4096


def populate(array: npt.NDArray[Any]) -> None:
    """Read one byte of every page of a contiguous (memory-mapped) array, so its pages are
    mapped into this process now."""
    raw = np.asarray(array).reshape(-1).view(np.uint8)
    int(raw[::PAGE_BYTES].sum())


# One CPU arena for every CPU session of the process (`session.use_env_allocators`), instead of
# one per session: the encoder's and the decoder's peaks share its free space. It grows by
# powers of two, and a free block is split whenever using it whole would waste 1 MiB or more
# (ONNX Runtime's default tolerates 128 MiB, so a cache a column wider than last step's could
# take a block of nearly twice its size). At the bart-base shape (int8, 2 threads; three
# alternating runs against per-session arenas, 2026-12-03) the peak RSS of a static batch of
# 32 fell from 565-566 to 503-505 MB, and of the running decode with 16 clients from 710-716
# to 622-626 MB, at speeds that could not be told apart.
ARENA_MAX_DEAD_BYTES = 1 << 20
_shared_arena_lock = threading.Lock()
_shared_arena = threading.Event()  # set once registered


def shared_cpu_arena() -> None:
    """Register the process-wide CPU arena with ONNX Runtime (once; later calls do nothing)."""
    with _shared_arena_lock:
        if _shared_arena.is_set():
            return
        config = ort.OrtArenaCfg(0, 0, -1, ARENA_MAX_DEAD_BYTES)  # no cap, powers of two
        memory = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        ort.create_and_register_allocator(memory, config)
        _shared_arena.set()
