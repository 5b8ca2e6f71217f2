"""The prepared benchmark scripts run end to end (on the tiny model, so they cannot rot)."""

import json

import pytest
import torch

from benchmarks import engines, gpu_check, peers


def test_engine_comparison_writes_a_table_with_token_agreement(tiny_store, tmp_path):
    code = engines.main(
        [
            "--store",
            str(tiny_store.store_dir),
            "--name",
            tiny_store.name,
            "--requests",
            "4",
            "--batch-sizes",
            "1,2",
            "--max-new-tokens",
            "6",
            "--threads",
            "1",
            "--engines",
            "torch,ort,ort-iobinding",
            "--rounds",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    (report,) = tmp_path.glob("engines-*.json")
    rows = json.loads(report.read_text())["rows"]
    assert {(r["engine"], r["batch"]) for r in rows} == {
        (e, b) for e in ("torch", "ort", "ort-iobinding") for b in (1, 2)
    }
    # Same weights, same inputs, greedy: ONNX Runtime writes PyTorch's tokens.
    assert all(r["token_agreement"] == 1.0 for r in rows if r["engine"] != "torch")
    # Two rounds: the p50 is the median of two, inside their range; a ratio for each engine.
    for r in rows:
        low, high = r["p50_range_ms"]
        assert low <= r["p50_ms"] <= high
        assert (r["speedup_vs_torch"] is None) == (r["engine"] == "torch")


def test_rounds_rotate_the_engine_order():
    order = engines._schedule(["torch", "ort", "int8"], 3)
    assert [e for _, e in order] == [
        *("torch", "ort", "int8"),
        *("ort", "int8", "torch"),
        *("int8", "torch", "ort"),
    ]
    assert [r for r, _ in order] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_runs_without_a_gpu_and_says_so(tiny_store, tmp_path):
    code = gpu_check.main(
        [
            "--store",
            str(tiny_store.store_dir),
            "--name",
            tiny_store.name,
            "--out",
            str(tmp_path),
            "--batches",
            "1",
            "--input-tokens",
            "12",
            "--new-tokens",
            "4",
            "--repeats",
            "1",
            "--skip-bart-base",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["setup"]["cuda"].startswith("none")
    engines_seen = {r["engine"] for r in result["results"][0]["rows"]}
    assert engines_seen == {"ort-cpu-fp32"}  # no CUDA: the fp16 variant is not run on a CPU
    report = (tmp_path / "gpu_check.md").read_text()
    assert "no CUDA device: only CPU rows were measured" in report


@pytest.fixture(scope="module")
def tiny_peer_work(tmp_path_factory):
    """The tiny-shaped peer model (published, HF and CTranslate2 copies), built once."""
    import argparse

    from benchmarks.peer_model import build

    work = tmp_path_factory.mktemp("peer-work")
    shape = argparse.Namespace(shape="tiny", threads=1, new_tokens=8, seed=0)
    (work / "built.json").write_text(json.dumps(build(work, shape)))
    return work


def test_peer_benchmark_runs_every_engine_and_prints_the_peers_line(
    tiny_peer_work, tmp_path, capsys
):
    work = tiny_peer_work
    args = ["--shape", "tiny", "--rounds", "1", "--b1-requests", "2", "--new-tokens", "8"]
    args += ["--src-tokens", "24", "--threads", "1", "--work", str(work), "--b32-batches", "2"]
    args += ["--store", str(tmp_path / "no-store"), "--out", str(tmp_path / "out")]
    code = peers.main(args)
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("peers: b1 speed-up vs HF eager ") and "int8 agreement n/a" in last
    (report,) = (tmp_path / "out").glob("peers-*.json")
    result = json.loads(report.read_text())
    rows = {r["engine"]: r for r in result["rows"]}
    assert set(rows) == set(peers.ENGINES)
    # Same weights, same token ids, greedy, fixed length: our runtime and CTranslate2 fp32
    # write HF eager's tokens (the variants may differ: that is what their gate measures).
    assert rows["prism-fp32"]["tokens_equal_hf"] == 1.0
    assert rows["ct2-fp32"]["tokens_equal_hf"] == 1.0
    # Two lanes split the batch; every row keeps the tokens it gets in one lane.
    assert rows["prism-int8-lanes"]["tokens_equal_one_lane"] == 1.0
    # The service serves fp32 on random weights; the int8 row really is the int8 service.
    assert rows["prism-http"]["served_variant"] == "fp32"
    assert rows["prism-http-int8"]["served_variant"] == "int8"
    # ... and the in-process request path runs the variant the HTTP one is compared with
    assert rows["prism-direct"]["served_variant"] == "fp32"
    assert rows["prism-direct-int8"]["served_variant"] == "int8"
    assert all(r["peak_rss_mb"] > 0 and r["b32_seq_s"] > 0 for r in rows.values())
    assert result["built"]["parity"] is True
    assert set(result["built"]["variants"]) == {"int8", "fp16"}
    assert "b32 x 2 a round, the median" in result["setup"]["batches"]


def test_mixed_load_runs_both_batching_modes_on_one_model(tiny_peer_work, tmp_path, capsys):
    from benchmarks import mixed_load

    args = ["--shape", "tiny", "--work", str(tiny_peer_work), "--out", str(tmp_path / "out")]
    args += ["--seconds", "2", "--warmup-seconds", "0.5", "--clients", "4", "--threads", "1"]
    args += ["--min-tokens", "4", "--max-tokens", "24", "--short", "8", "--long", "20"]
    args += ["--modes", "static,continuous,lanes"]
    assert mixed_load.main(args) == 0  # no request failed
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("mixed: throughput continuous/static ") and "(tiny, 4 clients)" in last
    (report,) = (tmp_path / "out").glob("mixed-tiny-*.json")
    rows = {r["mode"]: r for r in json.loads(report.read_text())["rows"]}
    assert rows["static"]["answered"] > 0 and rows["continuous"]["answered"] > 0
    # Each server really batched its own way (its metrics say so).
    assert rows["static"]["decode_steps"] == 0 and rows["static"]["batches"] > 0
    assert rows["continuous"]["decode_steps"] > 0 and rows["continuous"]["rows_per_step"] >= 1
    assert rows["lanes"]["answered"] > 0 and rows["lanes"]["decode_steps"] > 0
    assert (rows["continuous"]["lanes"], rows["lanes"]["lanes"]) == (1, 2)  # /v1/models says


def test_the_peer_workers_do_not_carry_torch_in_their_memory():
    # Every engine's worker process imports `benchmarks.peers`; its peak RSS is a result, so
    # that import must not pull in torch (the HF worker imports it itself).
    import subprocess
    import sys

    probe = "import sys, benchmarks.peers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gemm_peak_times_real_products_and_bounds_a_batch(tmp_path, capsys):
    from benchmarks import gemm_peak

    assert gemm_peak.main(["--repeats", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    (table,) = tmp_path.glob("gemm-*.md")
    text = table.read_text()
    assert text.count("| int8 |") == text.count("| fp32 |") == len(gemm_peak.SHAPES)
    # the bound's arithmetic: bart-base multiply-adds over the best measured rate
    rows = [
        {"kind": "int8", "m": m, "k": k, "n": n, "ms": 1.0, "gmacs": 100.0}
        for m, k, n in gemm_peak.SHAPES
    ]
    bound = gemm_peak.bound(rows)
    assert round(bound["encoder_gmac"]) == 190 and round(bound["decoder_gmac"]) == 90
    assert bound["encode_s"] == pytest.approx(bound["encoder_gmac"] / 100.0)
    assert bound["seq_per_s"] == pytest.approx(32 / (bound["encode_s"] + bound["decode_s"]))
    assert "at most" in capsys.readouterr().out


def test_the_benchmark_app_serves_a_parity_miss_the_service_refuses(
    tiny_model_dir, tmp_path, monkeypatch
):
    """Random weights tip parity on near-equal logits: the service refuses such a version,
    the benchmark's own app (`benchmarks.ungated_app`) measures it all the same."""
    import dataclasses
    import shutil

    import httpx

    from benchmarks.server import running_server
    from model_store.store import ModelStore
    from training import publishing

    real = publishing._exported
    monkeypatch.setattr(
        publishing,
        "_exported",
        lambda *a, **k: dataclasses.replace(real(*a, **k), passed=False, mismatches=2),
    )
    source = tmp_path / "src"
    shutil.copytree(tiny_model_dir, source)
    publishing.publish_model(ModelStore(tmp_path / "store"), "m", source, eval_metrics={})
    env = {
        "PRISM_MODEL_REF": "latest",
        "PRISM_PROVIDER": "cpu",
        "PRISM_VARIANT": "fp32",
        "PRISM_BENCH_WAIVED_VARIANT": "fp32",
        "PRISM_INTRA_OP_THREADS": "1",
    }
    refused = running_server(tmp_path / "store", "m", env, tmp_path / "service.log")
    with pytest.raises(RuntimeError, match="exited with code 3"), refused:
        pass
    app = "benchmarks.ungated_app:create_app"
    with running_server(tmp_path / "store", "m", env, tmp_path / "bench.log", app) as server:
        body = {"user_id": "user-1", "history": ["Alien (1979)"], "recommended_item": "Heat"}
        answer = httpx.post(f"{server.base_url}/v1/explanations", json=body, timeout=60)
        assert answer.status_code == 200 and answer.json()["explanation"]
