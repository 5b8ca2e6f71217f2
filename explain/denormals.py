"""Denormal floats flushed to zero while ONNX Runtime computes on the CPU.

A float32 below 1.18e-38 in magnitude (a *denormal*) takes x86 cores tens to hundreds of
cycles per operation instead of one, unless the thread's MXCSR register has FTZ (results
flushed to zero) and DAZ (denormal inputs read as zero) set. Attention makes them: a softmax
over scores that differ by more than about 87 gives probabilities below that bound, and the
product with the values then crawls. At the bart-base shape with random weights (120-token
inputs, int8 `per-token-split-v8`, 2 threads, Intel Xeon with AVX-512 and AMX, 2026-12-05)
the encoder's first layer spent 8.5 ms in one attention product that its last layer did in
0.5 ms, and an encoder call of 4 requests took 112 ms without the flags and 96 with them
(the second with ONNX Runtime's profiler on, which only adds time).

ONNX Runtime's `session.set_denormal_as_zero` sets the flags on a session's own intra-op
threads, and on the calling thread only once per process, for whichever thread created the
first session with it. The threads that call `run` here are the batcher's and the lanes',
created at other times, and with one intra-op thread (lanes) all the work runs on them. So
`flushed()` sets the flags on the calling thread around each run and puts its MXCSR back
afterwards: nothing else in the thread (numpy, the verifier) sees the change.

Flushing changes only values below 1.18e-38: the default model's 1,960 gate answers were
the same with and without it, fp32 and int8. On platforms other than x86-64 Linux (glibc)
`flushed()` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

FTZ = 1 << 15  # MXCSR flush-to-zero
DAZ = 1 << 6  # MXCSR denormals-are-zero
SESSION_KEY = "session.set_denormal_as_zero"  # ONNX Runtime's key for its own threads


class _Environment(ctypes.Structure):
    """glibc's `fenv_t` on x86-64: the x87 environment (28 bytes), then MXCSR."""

    _fields_ = [("x87", ctypes.c_ushort * 14), ("mxcsr", ctypes.c_uint)]


def _libm() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    if ctypes.sizeof(_Environment) != 32:  # not the layout this module reads
        return None
    for function in (library.fegetenv, library.fesetenv):
        function.argtypes = [ctypes.POINTER(_Environment)]
        function.restype = ctypes.c_int
    return library


_LIBM = _libm()


def supported() -> bool:
    """Whether this platform lets `flushed()` set the flags."""
    return _LIBM is not None


def mxcsr() -> int | None:
    """The calling thread's MXCSR (None where unsupported)."""
    if _LIBM is None:
        return None
    environment = _Environment()
    if _LIBM.fegetenv(ctypes.byref(environment)) != 0:
        return None
    return int(environment.mxcsr)


def set_mxcsr(word: int) -> bool:
    """Write the calling thread's MXCSR (its x87 state as it is); False where unsupported."""
    if _LIBM is None:
        return False
    environment = _Environment()
    if _LIBM.fegetenv(ctypes.byref(environment)) != 0:
        return False
    environment.mxcsr = word
    return bool(_LIBM.fesetenv(ctypes.byref(environment)) == 0)


@contextmanager
def flushed() -> Iterator[None]:
    """FTZ and DAZ on the calling thread for the block, its MXCSR restored after it."""
    saved = mxcsr()
    if saved is None or saved & (FTZ | DAZ) == FTZ | DAZ:  # unsupported, or already set
        yield
        return
    set_mxcsr(saved | FTZ | DAZ)
    try:
        yield
    finally:
        set_mxcsr(saved)
