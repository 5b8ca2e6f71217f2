"""The session helpers: shared, memory-mapped `.npy` tables, and the process-wide CPU arena."""

import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from explain import denormals, host_memory
from explain import session as session_module
from explain.host_memory import ARENA_MAX_DEAD_BYTES, shared_initializers
from explain.session import OnnxSession
from tests.unit.explain.test_denormals import in_clean_thread


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


def test_cpu_sessions_take_their_memory_from_the_process_wide_arena(tmp_path, monkeypatch):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "relu.onnx")
    # As in a fresh process: nothing registered yet. The real registration still runs.
    monkeypatch.setattr(host_memory, "_shared_arena", threading.Event())
    registered = []
    register = ort.create_and_register_allocator

    def spy(memory, config):
        registered.append(config)
        return register(memory, config)

    monkeypatch.setattr(ort, "create_and_register_allocator", spy)
    value = np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)
    for _ in range(2):
        session = OnnxSession(tmp_path / "relu.onnx", provider="cpu")
        options = session._session.get_session_options()
        assert options.get_session_config_entry("session.use_env_allocators") == "1"
        assert np.array_equal(session.run({"x": value})["y"], np.maximum(value, 0))
    # One arena for both sessions, registered once, splitting blocks rather than waste 1 MiB.
    assert len(registered) == 1
    assert registered[0].max_dead_bytes_per_chunk == ARENA_MAX_DEAD_BYTES == 1 << 20
    assert registered[0].arena_extend_strategy == 0  # powers of two


def _resident_kb(path: Path) -> int:
    """This process's resident KB of the mappings of `path` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(maxsplit=1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and first == "Rss:":
            total += int(line.split()[1])
    return total


def test_a_shared_table_is_resident_at_load_not_at_the_first_lookups(tmp_path):
    table = np.zeros((4096, 256), dtype=np.int8)  # 1 MiB: 256 pages nobody has read
    np.save(tmp_path / "big.npy", table)
    cold = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert _resident_kb(tmp_path / "big.npy") < 64  # mapping alone brings nothing in
    del cold
    shared = shared_initializers({"shared.big": tmp_path / "big.npy"})
    assert _resident_kb(tmp_path / "big.npy") >= 1024  # every page, before any lookup
    assert shared["shared.big"].shape() == [4096, 256]


def _residual_norm_graph(path: Path) -> None:
    """x + r, layer-normalised: what ONNX Runtime's `SkipLayerNormFusion` fuses."""
    shape = [16, 1, 8]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "r")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    weights = [
        helper.make_tensor("g", TensorProto.FLOAT, [8], np.linspace(0.5, 1.5, 8).tolist()),
        helper.make_tensor("b", TensorProto.FLOAT, [8], np.linspace(-0.1, 0.1, 8).tolist()),
    ]
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "g", "b"], ["y"], axis=-1, epsilon=1e-5),
    ]
    graph = helper.make_graph(nodes, "residual", inputs, [y], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _optimised_ops(path: Path, options: ort.SessionOptions, **kwargs) -> set[str]:
    saved = path.with_name(f"{path.stem}.{len(kwargs)}.opt.onnx")
    options.optimized_model_filepath = str(saved)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], **kwargs)
    return {node.op_type for node in onnx.load(saved).graph.node}


def test_cpu_sessions_keep_the_residual_add_and_layer_norm_unfused(tmp_path, monkeypatch):
    _residual_norm_graph(tmp_path / "residual.onnx")
    # ONNX Runtime fuses the pair at the level the sessions use ...
    fused = _optimised_ops(tmp_path / "residual.onnx", session_module.session_options(1))
    assert "SkipLayerNormalization" in fused
    # ... and OnnxSession opens CPU sessions without that fusion (its kernel is slower).
    opened = []
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None, **kwargs):
        opened.append(kwargs.get("disabled_optimizers"))
        return real(path, sess_options=sess_options, providers=providers, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    session = OnnxSession(tmp_path / "residual.onnx", provider="cpu", intra_op_threads=1)
    monkeypatch.undo()
    assert opened == [list(session_module.CPU_DISABLED_OPTIMIZERS)]
    kept = _optimised_ops(
        tmp_path / "residual.onnx",
        session_module.session_options(1),
        disabled_optimizers=opened[0],
    )
    assert "SkipLayerNormalization" not in kept and {"Add", "LayerNormalization"} <= kept
    x, r = (np.random.default_rng(i).standard_normal((16, 1, 8)).astype(np.float32) for i in (0, 1))
    s = x + r
    mean, var = s.mean(-1, keepdims=True), s.var(-1, keepdims=True)
    expected = (s - mean) / np.sqrt(var + 1e-5) * np.linspace(0.5, 1.5, 8)
    expected += np.linspace(-0.1, 0.1, 8)
    assert np.allclose(session.run({"x": x, "r": r})["y"], expected, atol=1e-5)


@pytest.mark.skipif(not denormals.supported(), reason="x86-64 Linux (glibc) only")
def test_cpu_runs_flush_denormals_on_the_calling_thread_and_leave_it_as_it_was(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "half"], ["y"])], "mul", [x], [y])
    graph.initializer.append(half)
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx"
    )
    # One intra-op thread: the Mul runs on the thread that calls `run`.
    session = OnnxSession(tmp_path / "m.onnx", provider="cpu", intra_op_threads=1)
    options = session._session.get_session_options()
    assert options.get_session_config_entry(denormals.SESSION_KEY) == "1"
    smallest_normal = np.array([1.1754944e-38, 3.0], dtype=np.float32)

    def body() -> tuple[np.ndarray, bool]:
        out = session.run({"x": smallest_normal})["y"]
        return out, (denormals.mxcsr() or 0) & (denormals.FTZ | denormals.DAZ) == 0

    out, left_clean = in_clean_thread(body)
    # Compared by their bits: read on a thread with DAZ set, a denormal would compare as 0.
    assert out.view(np.uint32).tolist() == [0, np.float32(1.5).view(np.uint32)]
    assert left_clean


def test_intra_op_threads_spin_during_a_run_unless_turned_off(tmp_path, monkeypatch):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "r.onnx"
    )
    monkeypatch.setattr(session_module, "_spinning", ["run"])

    def entries() -> tuple[str, str]:
        options = OnnxSession(tmp_path / "r.onnx", provider="cpu")._session.get_session_options()
        return (
            options.get_session_config_entry("session.intra_op.allow_spinning"),
            options.get_session_config_entry("session.force_spinning_stop"),
        )

    assert entries() == ("1", "1")  # spin between nodes, sleep once the run ends
    session_module.set_spinning("off")
    assert entries() == ("0", "0")
    with pytest.raises(ValueError, match="one of run, off"):
        session_module.set_spinning("always")  # type: ignore[arg-type]
