"""How fast this CPU multiplies matrices through ONNX Runtime, and what that bounds.

    python -m benchmarks.gemm_peak [--threads 2] [--out benchmarks/results]

Times one-node graphs, best of `--repeats` runs each, at the bart-base shapes a batch of 32
requests of 120 tokens meets: the encoder's products (3,840 token rows) and a decoder step's
(32 rows, the LM head's 50,330 columns included). `int8` is ONNX Runtime's integer GEMM
(`MatMulInteger`, uint8 activations x int8 weights, the kernel under the `per-token` recipe's
`MatMulIntegerToFloat`), `fp32` its float GEMM. Weights are constant initializers (packed
once at load, as in the served graphs).

From the fastest int8 rate at each row count it then bounds one batch of 32: multiply-adds
of bart-base's constant-weight products (encoder with the cross key/value projections,
32 decoder steps with the LM head) divided by that rate. Attention, normalisation,
quantisation and the cross-attention reads are left out, so a real engine is slower than
the bound; what the bound says is how much of a measured batch time is not integer GEMM.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from benchmarks import cpu_label

D, FFN, VOCAB, LAYERS = 768, 3072, 50_330, 6  # bart-base
BATCH, SRC, NEW = 32, 120, 32
SHAPES = [  # (rows, reduction, columns)
    (BATCH * SRC, D, D),
    (BATCH * SRC, D, FFN),
    (BATCH * SRC, FFN, D),
    (BATCH, D, D),
    (BATCH, D, FFN),
    (BATCH, FFN, D),
    (BATCH, D, VOCAB),
]


def _session(kind: str, k: int, n: int, threads: int) -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    if kind == "int8":
        weight = numpy_helper.from_array(rng.integers(-63, 64, (k, n), dtype=np.int8), "w")
        zero = numpy_helper.from_array(np.array(128, np.uint8), "zp")
        node = helper.make_node("MatMulInteger", ["a", "w", "zp"], ["y"])
        inputs, out, initializers = TensorProto.UINT8, TensorProto.INT32, [weight, zero]
    else:
        weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        inputs, out, initializers = TensorProto.FLOAT, TensorProto.FLOAT, [weight]
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("a", inputs, ["rows", k])],
        [helper.make_tensor_value_info("y", out, ["rows", n])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def measure(threads: int, repeats: int) -> list[dict[str, float | int | str]]:
    rows_out: list[dict[str, float | int | str]] = []
    rng = np.random.default_rng(1)
    for kind in ("int8", "fp32"):
        for m, k, n in SHAPES:
            session = _session(kind, k, n, threads)
            a = (
                rng.integers(0, 256, (m, k), dtype=np.uint8)
                if kind == "int8"
                else rng.standard_normal((m, k)).astype(np.float32)
            )
            session.run(None, {"a": a})
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                session.run(None, {"a": a})
                best = min(best, time.perf_counter() - start)
            gmacs = m * k * n / best / 1e9
            rows_out.append(
                {"kind": kind, "m": m, "k": k, "n": n, "ms": best * 1e3, "gmacs": gmacs}
            )
    return rows_out


def bound(rows: list[dict[str, float | int | str]]) -> dict[str, float]:
    """Seconds of integer GEMM one batch of 32 needs at the measured best rates."""
    int8 = [r for r in rows if r["kind"] == "int8"]
    encoder_rate = max(float(r["gmacs"]) for r in int8 if r["m"] == BATCH * SRC) * 1e9
    decoder_rate = max(float(r["gmacs"]) for r in int8 if r["m"] == BATCH) * 1e9
    # per token: q, k, v, out (4 D^2) and the feed-forward pair (2 D FFN); the encoder also
    # projects each token once into every decoder layer's cross keys and values (2 D^2)
    encoder_macs = BATCH * SRC * LAYERS * (4 * D * D + 2 * D * FFN + 2 * D * D)
    # per generated token: self-attention q, k, v, out, cross-attention q, out, feed-forward,
    # and the LM head once
    decoder_macs = BATCH * NEW * (LAYERS * (6 * D * D + 2 * D * FFN) + D * VOCAB)
    encode_s = encoder_macs / encoder_rate
    decode_s = decoder_macs / decoder_rate
    return {
        "encoder_gmac": encoder_macs / 1e9,
        "decoder_gmac": decoder_macs / 1e9,
        "encode_s": encode_s,
        "decode_s": decode_s,
        "seq_per_s": BATCH / (encode_s + decode_s),
    }


def report(rows: list[dict[str, float | int | str]], threads: int) -> str:
    b = bound(rows)
    out = [
        f"# ONNX Runtime GEMM peak ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"onnxruntime {ort.__version__}, {threads} intra-op threads, best of the repeats, "
        f"cpu {cpu_label()}",
        "",
        "| kind | rows | reduction | columns | ms | GMAC/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['kind']} | {r['m']} | {r['k']} | {r['n']} | {float(r['ms']):.2f} "
        f"| {float(r['gmacs']):.0f} |"
        for r in rows
    ]
    out += [
        "",
        f"Integer GEMM alone for one bart-base batch of {BATCH} ({SRC}-token inputs, {NEW} new "
        f"tokens): encoder {b['encoder_gmac']:.0f} GMAC in {b['encode_s']:.2f} s, decoder "
        f"{b['decoder_gmac']:.0f} GMAC in {b['decode_s']:.2f} s: at most "
        f"{b['seq_per_s']:.1f} seq/s if nothing else took time.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    text = report(measure(args.threads, args.repeats), args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gemm-{datetime.now(UTC):%Y%m%d-%H%M}.md"
    path.write_text(text)
    print(text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
