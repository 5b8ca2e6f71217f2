"""The GPU check's ONNX Runtime half (`benchmarks.gpu_ort`) runs on CPU too: its timings, its
served check and its error rows are exercised here on the tiny published model."""

import json
import logging
import threading

import numpy as np
import onnxruntime as ort

from benchmarks import gpu_ort, gpu_served
from benchmarks.gpu_report import findings
from explain import artifacts, cuda_libraries
from explain.users import UserTable


def onnx_dir(tiny_store):
    from model_store.store import ModelStore

    version = ModelStore(tiny_store.store_dir).resolve(tiny_store.name, "production")
    return version.path / artifacts.ONNX_DIR, version.path


def test_each_variant_is_timed_and_a_missing_one_is_reported_not_raised(tiny_store):
    graphs, version_dir = onnx_dir(tiny_store)
    table = UserTable.load(version_dir / artifacts.USERS_DIR)
    vectors = np.asarray(table.vectors, dtype=np.float32)
    rows = gpu_ort.measure_ort(
        "tiny",
        graphs,
        provider="cpu",
        variants=[artifacts.FP32, "no-such-variant"],
        user_table=vectors,
        batches=[1, 3],
        length=10,
        new_tokens=4,
        repeats=1,
    )
    timed = [r for r in rows if not r.get("error")]
    assert [(r["engine"], r["batch"]) for r in timed] == [("ort-cpu-fp32", 1), ("ort-cpu-fp32", 3)]
    assert all(len(r["tokens"]) == r["batch"] for r in timed)
    # Fixed lengths (EOS is banned until the limit), the forced BOS first.
    assert all(len(t) == 4 and t[0] == 0 for r in timed for t in r["tokens"])
    (failed,) = [r for r in rows if r.get("error")]
    assert failed["engine"] == "ort-cpu-no-such-variant" and failed["batch"] is None
    lines = findings([{"model": "tiny", "rows": rows, "parameters": 1}])
    assert any("ort-cpu-no-such-variant: NOT measured" in line for line in lines)


def test_the_served_check_compares_sentences_and_running_batches(tiny_store):
    result = gpu_served.served_check(
        tiny_store.store_dir, tiny_store.name, "cpu", [artifacts.FP32], count=12
    )
    (row,) = result["rows"]
    assert result["requests"] == 12
    # The same provider and variant as the reference: every sentence is the same, and rows
    # that join a running batch decode as they do in the static batch.
    assert row["same_text_as_cpu_fp32"] == 12
    assert row["running_same_as_static"] == 12
    assert row["example"]
    lines = findings([{"model": "tiny", "rows": [], "served": result, "parameters": 1}])
    assert any("12/12 served sentences as on CPU fp32" in line for line in lines)


def test_catalogue_jobs_mix_known_and_unknown_users_and_history_lengths():
    jobs = gpu_served.catalogue_jobs(["u1", "u2"], 30)
    assert {j.user_id for j in jobs} >= {"u1", "u2"}
    assert any(j.user_id.startswith("new-") for j in jobs)
    lengths = {len(j.history) for j in jobs}
    assert 0 in lengths and max(lengths) >= 20
    assert jobs == gpu_served.catalogue_jobs(["u1", "u2"], 30)  # seeded: the same every run


def test_the_child_writes_its_rows_as_json(tiny_store, tmp_path):
    graphs, version_dir = onnx_dir(tiny_store)
    table = UserTable.load(version_dir / artifacts.USERS_DIR)
    np.save(tmp_path / "users.npy", np.asarray(table.vectors, dtype=np.float32))
    out = tmp_path / "out.json"
    args = ["--onnx-dir", str(graphs), "--provider", "cpu", "--variants", "fp32"]
    args += ["--users", str(tmp_path / "users.npy"), "--batches", "2", "--input-tokens", "8"]
    args += ["--new-tokens", "3", "--repeats", "1", "--json", str(out)]
    code = gpu_ort.main(args)
    assert code == 0
    result = json.loads(out.read_text())
    assert [r["engine"] for r in result["rows"]] == ["ort-cpu-fp32"]
    assert result["rows"][0]["gpu_added_mb"] is None  # no GPU memory is read for CPU


def test_cuda_libraries_are_preloaded_once_and_a_failure_only_logs(monkeypatch, caplog):
    calls = []

    def preload():
        calls.append(1)
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(ort, "preload_dlls", preload, raising=False)
    monkeypatch.setattr(cuda_libraries, "_cuda_preloaded", threading.Event())
    with caplog.at_level(logging.WARNING, logger=cuda_libraries.logger.name):
        cuda_libraries.preload_cuda_libraries()
        cuda_libraries.preload_cuda_libraries()
    assert calls == [1]
    assert "could not preload the CUDA libraries" in caplog.text


def test_graphs_served_with_another_models_tokenizer_decode_alike_in_both_batches(
    tiny_store, tmp_path
):
    graphs, version_dir = onnx_dir(tiny_store)
    vectors = np.asarray(UserTable.load(version_dir / artifacts.USERS_DIR).vectors, np.float32)
    explainer = gpu_served.shaped_explainer(
        graphs, tiny_store.store_dir, tiny_store.name, vectors, "cpu", tmp_path
    )
    assert explainer.info.variant == artifacts.FP32  # fp16 is for CUDA
    result = gpu_served.running_check(explainer, count=10, repeats=1)
    static, kept, copied = result["rows"]
    assert static["engine"] == "static batch" and static["p50_ms"] > 0
    # Every row joins at once and leaves at its own length: the same tokens as the static
    # batch either way; without IO binding nothing is uploaded.
    assert kept["same_as_static"] == copied["same_as_static"] == 10
    assert kept["uploads"] == copied["uploads"] == 0 and kept["steps"] > 1
    lines = findings([{"model": "tiny", "rows": [], "running": result, "parameters": 1}])
    assert any(
        "10 served requests (the published model's tokenizer): static batch" in line
        for line in lines
    )
