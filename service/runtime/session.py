"""A thin ONNX Runtime session wrapper: provider choice, input checks, IO binding.

ORT silently falls back to CPU when the CUDA provider cannot load (a missing libcudnn, a
driver mismatch), so the provider that really runs is read back from `get_providers()`
instead of being trusted from the request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)

ProviderChoice = Literal["auto", "cuda", "cpu"]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class ProviderError(RuntimeError):
    pass


class OnnxSession:
    def __init__(
        self, path: Path, *, provider: Literal["cuda", "cpu"], intra_op_threads: int = 0
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        # One batch at a time runs on the batcher's worker thread: inter-op parallelism only
        # competes with the intra-op pool for the same cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = [CUDA, CPU] if provider == "cuda" else [CPU]
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        active = self._session.get_providers()
        if provider == "cuda" and active[0] != CUDA:
            raise ProviderError(
                f"CUDA was requested for {path.name} but ONNX Runtime loaded {active[0]} "
                "(is onnxruntime-gpu installed, and do CUDA 12 / cuDNN 9 libraries load?)"
            )
        self.path = path
        self.provider: Literal["cuda", "cpu"] = "cuda" if active[0] == CUDA else "cpu"
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    @property
    def raw(self) -> ort.InferenceSession:
        return self._session

    def check_inputs(self, names: Sequence[str] | Mapping[str, Any]) -> None:
        missing = sorted(set(self.input_names) - set(names))
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {', '.join(missing)}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.check_inputs(feeds)
        return self._session.run(self.output_names, dict(feeds))  # type: ignore[no-any-return]


def resolve_provider(choice: ProviderChoice) -> Literal["cuda", "cpu"]:
    """What to ask for. `auto` asks for CUDA only when this ORT build has it; whether it
    really loaded is checked per session."""
    available = ort.get_available_providers()
    if choice == "cpu":
        return "cpu"
    if choice == "cuda":
        if CUDA not in available:
            raise ProviderError(
                f"provider=cuda but this onnxruntime build offers only {', '.join(available)} "
                "(install the `gpu` extra: onnxruntime-gpu)"
            )
        return "cuda"
    return "cuda" if CUDA in available else "cpu"


def open_sessions(
    paths: Sequence[Path], *, choice: ProviderChoice, intra_op_threads: int
) -> list[OnnxSession]:
    """Open every graph on one provider. `auto` falls back to CPU, loudly, when CUDA fails."""
    wanted = resolve_provider(choice)
    try:
        sessions = [
            OnnxSession(p, provider=wanted, intra_op_threads=intra_op_threads) for p in paths
        ]
        if wanted == "cuda" and any(s.provider != "cuda" for s in sessions):
            raise ProviderError("CUDA provider did not load for every graph")
    except ProviderError:
        if choice == "cuda":
            raise
        logger.warning("CUDA execution provider did not load; falling back to CPU", exc_info=True)
        sessions = [
            OnnxSession(p, provider="cpu", intra_op_threads=intra_op_threads) for p in paths
        ]
    logger.info("ONNX Runtime provider: %s (requested %s)", sessions[0].provider, choice)
    return sessions
