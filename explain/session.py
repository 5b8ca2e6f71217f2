"""An ONNX Runtime session that owns what its graph needs: provider, element types, IO binding.

Like optimum's `ORTSessionMixin`, the wrapper reads every input's and output's name and
element type from the graph once. `run` casts each feed to the type the graph declares
(int64 ids, float32 or float16 activations), so the decode loop never mentions a dtype and
the same loop drives fp32, fp16 and int8 graphs. It also hides IO binding: on CUDA, the
outputs named in `keep` stay on the device as `OrtValue`s and go back in as inputs on the
next call, so the KV cache never crosses PCIe; on CPU they come back as numpy arrays. Both
are one call, `run`, and one code path for the caller.

ORT silently falls back to CPU when the CUDA provider cannot load (a missing libcudnn, a
driver mismatch), so the provider that really runs is read back from `get_providers()`
instead of being trusted from the request.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from explain import artifacts, denormals
from explain.cuda_libraries import preload_cuda_libraries
from explain.host_memory import bound_heap_retention, shared_cpu_arena, shared_initializers

logger = logging.getLogger(__name__)

ProviderChoice = Literal["auto", "cuda", "cpu"]
Device = Literal["cuda", "cpu"]
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
# ONNX element type names (as ORT reports them) -> numpy dtypes.
_NUMPY_TYPES: Mapping[str, npt.DTypeLike] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}
Value: TypeAlias = npt.NDArray[Any] | ort.OrtValue


class ProviderError(RuntimeError):
    pass


class MissingInputError(ValueError):
    pass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | str | None, ...]


def _spec(arg: Any) -> TensorSpec:
    kind = str(arg.type)
    if kind not in _NUMPY_TYPES:
        raise TypeError(f"graph value {arg.name} has an unsupported element type {kind}")
    return TensorSpec(arg.name, np.dtype(_NUMPY_TYPES[kind]), tuple(arg.shape))


SpinMode = Literal["run", "off"]
SPIN_MODES: tuple[SpinMode, ...] = ("run", "off")
# What idle intra-op threads do between the nodes of a run (`set_spinning`): `run` spins
# and sleeps once the run ends (ONNX Runtime's `force_spinning_stop`), `off` always sleeps.
# Measured at bart-base (int8 `per-token-split-decoder-v8`, 2 threads, one lane, Intel
# AVX-512/AMX host, 2026-12-05, scratch driver, two alternating pairs): batch 1 0.25-0.27
# against 0.15-0.19 s, a static batch of 32 1.40-1.46 against 1.16-1.22 s; each node's hand-off
# to a sleeping thread was a wake-up. Under 2x overload of the default model (`make
# overload`, one run each) goodput 87.2 and 88.7 req/s (89 % both), /healthz p99 10.9 and
# 14.1 ms: the threads stop when a run ends, so they spin only while the batcher computes.
_spinning: list[SpinMode] = ["run"]


def set_spinning(mode: SpinMode) -> None:
    """The process's spin mode for sessions opened from now on (`PRISM_INTRA_OP_SPINNING`)."""
    if mode not in SPIN_MODES:
        raise ValueError(f"spin mode {mode!r}: one of {', '.join(SPIN_MODES)}")
    _spinning[0] = mode


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads > 0:
        options.intra_op_num_threads = intra_op_threads
    # One batch at a time runs on the batcher's worker thread: inter-op parallelism only
    # competes with the intra-op pool for the same cores.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Intra-op threads spin between the nodes of a run and sleep once it ends (`run`), or
    # always sleep (`off`); see `set_spinning`.
    spin = _spinning[0] == "run"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1" if spin else "0")
    # Denormals flushed to zero on the intra-op threads (the calling thread: `run`).
    options.add_session_config_entry(denormals.SESSION_KEY, "1")
    return options


# Graph fusions that make CPU sessions slower. ONNX Runtime 1.32's CPU kernel for
# `SkipLayerNormalization` (what `SkipLayerNormFusion` makes of a residual `Add` and the
# `LayerNormalization` after it) took 68 us for a [16, 1, 768] input against 14 us for the
# `Add` and `LayerNormalization` it replaces (one thread; 128 against 23 us at 32 rows), and
# a bart-base decoder step has 19 of them. Unfused, a static batch of 32 at the bart-base
# shape (int8 `per-token-v8`, 2 threads, AMD EPYC with AVX-512 VNNI, 2026-12-04) took
# 1.30-1.33 s against 1.34-1.36 s with two lanes and 1.47-1.50 against 1.50-1.58 s with one
# (two runs of 1.9 and 2.2 s on the shared machine aside); batch 1 was unchanged (191-203
# against 193-208 ms). On CUDA the fused kernel stays.
#
# `BiasGeluFusion` (a bias `Add` and the `Gelu` after it as one `BiasGelu`): on the AMX host
# (ONNX Runtime 1.32, one thread, 2026-12-05) the fused kernel took 46 us for [16, 3,072]
# and 426 us for [120, 3,072] against 38 and 397 us for the `Add` and `Gelu` it replaces,
# with the same bits; at the bart-base shape (int8, static batch of 32 in two lanes,
# alternating runs) encoding took 0.376 against 0.389 s, the batch 0.848 against 0.861 s.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion", "BiasGeluFusion")


class OnnxSession:
    """One graph on one provider. `run(feeds, keep=...)` is the only way to call it."""

    def __init__(
        self,
        path: Path,
        *,
        provider: Device,
        intra_op_threads: int = 0,
        options: ort.SessionOptions | None = None,
        shared: Mapping[str, ort.OrtValue] | None = None,
    ) -> None:
        providers = [CUDA, CPU] if provider == "cuda" else [CPU]
        options = options or session_options(intra_op_threads)
        if provider == "cuda":
            preload_cuda_libraries()
        if provider == "cpu":
            shared_cpu_arena()
            options.add_session_config_entry("session.use_env_allocators", "1")
        # Initializers owned by the caller and used in place (one copy for several sessions);
        # ORT keeps a pointer, so this object holds them for the session's life.
        self.shared = dict(shared or {})
        for name, value in self.shared.items():
            options.add_initializer(name, value)
        # ORT sets the denormal flags for good on the thread that creates the first session
        # with them in the process; created inside `flushed()`, that thread gets its own back.
        with denormals.flushed():
            self._session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=providers,
                disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS) if provider == "cpu" else [],
            )
        active = self._session.get_providers()
        if provider == "cuda" and active[0] != CUDA:
            raise ProviderError(
                f"CUDA was requested for {path.name} but ONNX Runtime loaded {active[0]} "
                "(is onnxruntime-gpu installed, and do its CUDA and cuDNN 9 libraries load?)"
            )
        self.path = path
        self.device: Device = "cuda" if active[0] == CUDA else "cpu"
        self.inputs = {a.name: _spec(a) for a in self._session.get_inputs()}
        self.outputs = {a.name: _spec(a) for a in self._session.get_outputs()}
        self.output_names = list(self.outputs)
        # What the graph says about itself (`explain.artifacts.ACTIVATION_SCALES`, ...).
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        # IO binding pays off where outputs can stay on a device; on CPU plain runs are faster.
        self.io_binding = self.device == "cuda"

    @property
    def provider(self) -> Device:
        return self.device

    def float_type(self, name: str) -> np.dtype[Any]:
        """The element type the graph wants for input `name` (float32 or float16)."""
        return self.inputs[name].dtype

    def require(self, names: Collection[str]) -> None:
        missing = sorted(set(self.inputs) - set(names) - {artifacts.WANT_LOGITS})
        if missing:
            raise MissingInputError(f"{self.path.name}: missing inputs {', '.join(missing)}")

    def _flagged(self, feeds: Mapping[str, Value], names: Collection[str]) -> dict[str, Value]:
        """`feeds` plus the inputs the session sets itself: `artifacts.WANT_LOGITS`, whether
        `names` (the outputs fetched) include the logits, where the graph has that input."""
        flagged = dict(feeds)
        if artifacts.WANT_LOGITS in self.inputs:
            flagged[artifacts.WANT_LOGITS] = np.array(artifacts.LOGITS in names)
        return flagged

    def _cast(self, name: str, value: Value) -> Value:
        if isinstance(value, ort.OrtValue):
            return value
        wanted = self.inputs[name].dtype
        array: npt.NDArray[Any] = np.asarray(value)
        if array.dtype != wanted:
            array = array.astype(wanted)
        return np.ascontiguousarray(array)

    def run(
        self,
        feeds: Mapping[str, Value],
        *,
        keep: Collection[str] = (),
        outputs: Collection[str] | None = None,
    ) -> dict[str, Value]:
        """Run with every input the graph declares; returns the outputs named in `outputs`
        (every output when None) by name. The graph still computes what they depend on; an
        output not asked for is not copied out.

        Outputs named in `keep` are meant to be fed back in (a KV cache): with IO binding
        they stay where the graph ran, as `OrtValue`s; otherwise every output is numpy.
        """
        self.require(feeds)
        names = self.output_names
        if outputs is not None:
            names = [name for name in self.output_names if name in outputs]
        feeds = self._flagged(feeds, names)
        cast = {name: self._cast(name, feeds[name]) for name in self.inputs}
        if not self.io_binding:
            plain = {k: v for k, v in cast.items() if not isinstance(v, ort.OrtValue)}
            if len(plain) != len(cast):
                plain.update({k: v.numpy() for k, v in cast.items() if isinstance(v, ort.OrtValue)})
            with denormals.flushed():
                values = self._session.run(names, plain)
            return dict(zip(names, values, strict=True))
        binding = self._bind(cast)
        for name in names:
            binding.bind_output(name, self.device if name in keep else "cpu", 0)
        with denormals.flushed():
            self._session.run_with_iobinding(binding)
        out: dict[str, Value] = {}
        for name, value in zip(names, binding.get_outputs(), strict=True):
            out[name] = value if name in keep else value.numpy()
        return out

    def _bind(self, values: Mapping[str, Value]) -> ort.IOBinding:
        """An IO binding with `values` (cast already) bound as inputs where they are."""
        binding = self._session.io_binding()
        for name, value in values.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, value)
        return binding

    def run_in_place(
        self,
        feeds: Mapping[str, Value],
        cache: Mapping[str, tuple[str, ort.OrtValue]],
        *,
        outputs: Collection[str],
    ) -> dict[str, npt.NDArray[Any]]:
        """Run with each `cache` entry (past -> (present, buffer)) bound as both that input and
        that output, so the graph updates the buffer in place (`explain.kv_cache`); the other
        inputs from `feeds`. Returns the outputs named in `outputs`, on the host."""
        self.require([*feeds, *cache])
        names = [name for name in self.output_names if name in outputs]
        feeds = self._flagged(feeds, names)
        binding = self._bind({n: self._cast(n, feeds[n]) for n in self.inputs if n not in cache})
        for name in names:  # bound first: `get_outputs` lists them first
            binding.bind_output(name, "cpu")
        for past, (present, buffer) in cache.items():
            binding.bind_ortvalue_input(past, buffer)
            binding.bind_ortvalue_output(present, buffer)
        with denormals.flushed():
            self._session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {name: values[i].numpy() for i, name in enumerate(names)}

    def to_device(self, array: npt.NDArray[Any]) -> Value:
        """A host array where this session runs: an `OrtValue` on the device with IO binding
        (one copy, to be fed to many runs), else the array itself."""
        if not self.io_binding:
            return array
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device, 0)

    def empty(self, name: str, shape: Sequence[int]) -> Value:
        """A zero-size (or zero-filled) input of the graph's own type, where it will be used."""
        dtype = self.inputs[name].dtype
        if not self.io_binding:
            return np.zeros(tuple(shape), dtype=dtype)
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, self.device, 0)


def to_host(value: Value) -> npt.NDArray[Any]:
    """A value as a numpy array on the host (an `OrtValue` on a device is copied back)."""
    return value.numpy() if isinstance(value, ort.OrtValue) else np.asarray(value)


def resolve_provider(choice: ProviderChoice) -> Device:
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
    paths: Sequence[Path],
    *,
    choice: ProviderChoice,
    intra_op_threads: int,
    shared_files: Mapping[str, Path] | None = None,
) -> list[OnnxSession]:
    """Open every graph on one provider. `auto` falls back to CPU, loudly, when CUDA fails.

    `shared_files` names initializers the graphs keep as external data (`.npy` files): on CPU
    one memory-mapped copy serves every session; on CUDA each session loads its own onto the
    device, as ORT does for external data."""
    wanted = resolve_provider(choice)
    bound_heap_retention()
    host_shared = shared_initializers(shared_files or {})
    try:
        sessions = [
            OnnxSession(
                p,
                provider=wanted,
                intra_op_threads=intra_op_threads,
                shared=host_shared if wanted == "cpu" else None,
            )
            for p in paths
        ]
        if wanted == "cuda" and any(s.device != "cuda" for s in sessions):
            raise ProviderError("CUDA provider did not load for every graph")
    except ProviderError:
        if choice == "cuda":
            raise
        logger.warning("CUDA execution provider did not load; falling back to CPU", exc_info=True)
        sessions = [
            OnnxSession(p, provider="cpu", intra_op_threads=intra_op_threads, shared=host_shared)
            for p in paths
        ]
    logger.info("ONNX Runtime provider: %s (requested %s)", sessions[0].device, choice)
    return sessions
