"""CUDA and cuDNN loaded before the first CUDA session (`preload_cuda_libraries`)."""

from __future__ import annotations

import logging
import threading

import onnxruntime as ort

logger = logging.getLogger(__name__)

_cuda_preloaded = threading.Event()


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN before the first CUDA session (onnxruntime-gpu's `preload_dlls`:
    NVIDIA's pip packages first, then the default library paths). Without it, an
    onnxruntime-gpu installed with its `cuda,cudnn` extras finds those libraries only when
    PyTorch was imported first; a system CUDA (the GPU image) is found either way. Once per
    process; a build without the function does nothing, and a failure only logs (the
    session then reports which provider really loaded)."""
    if _cuda_preloaded.is_set():
        return
    _cuda_preloaded.set()
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:
        logger.warning("could not preload the CUDA libraries", exc_info=True)
