"""`explain.denormals`: FTZ and DAZ on the calling thread for a block, its MXCSR put back."""

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from explain import denormals

pytestmark = pytest.mark.skipif(not denormals.supported(), reason="x86-64 Linux (glibc) only")

SMALLEST_NORMAL = np.float32(1.1754944e-38)
ROUND_DOWN = 0x2000  # MXCSR rounding control 01: a word that is neither the default nor flushed


def set_mxcsr(value: int) -> None:
    assert denormals.set_mxcsr(value)


def in_clean_thread(body: Callable[[], Any]) -> Any:
    """`body`'s result, run on a new thread whose MXCSR has neither flag (ONNX Runtime may
    have set them for good on the thread that created a session earlier in this process)."""
    result: dict[str, Any] = {}

    def target() -> None:
        word = denormals.mxcsr()
        assert word is not None
        set_mxcsr(word & ~(denormals.FTZ | denormals.DAZ))
        result["value"] = body()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return result["value"]


def denormal_survives() -> bool:
    """Read by arithmetic, not from the register: half the smallest normal float32."""
    return bool(np.array([SMALLEST_NORMAL]) / np.float32(2) != 0)


def test_the_block_flushes_and_the_thread_gets_its_exact_word_back():
    def body() -> tuple[int, bool, int, bool, int, bool]:
        prior = (denormals.mxcsr() or 0) | ROUND_DOWN
        set_mxcsr(prior)
        before = denormal_survives()
        with denormals.flushed():
            inside_word, inside = denormals.mxcsr() or 0, denormal_survives()
        after_word = denormals.mxcsr() or 0
        set_mxcsr(prior & ~ROUND_DOWN)
        return prior, before, inside_word, inside, after_word, denormal_survives()

    prior, before, inside_word, inside, after_word, after = in_clean_thread(body)
    assert before and after and not inside
    assert inside_word == prior | denormals.FTZ | denormals.DAZ
    assert after_word == prior  # the rounding mode and every other bit as they were


def test_a_thread_that_already_flushes_keeps_its_flags():
    def body() -> tuple[bool, bool]:
        flushing = (denormals.mxcsr() or 0) | denormals.FTZ | denormals.DAZ
        set_mxcsr(flushing)
        with denormals.flushed():
            pass
        return denormals.mxcsr() == flushing, denormal_survives()

    kept, survives = in_clean_thread(body)
    assert kept and not survives
