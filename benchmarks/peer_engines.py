"""The engines of the peer benchmark (`benchmarks.peers`): one worker per engine, each run in
its own process so that its peak RSS is its own, on the model and inputs `benchmarks.peer_model`
built."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peer_model import DECODER_START, EOS, FORCED_BOS, NAME, PAD

LANES = 2


def _peak_rss_mb() -> float:
    """This process's peak RSS since it started (Linux `VmHWM`). Not `ru_maxrss`: Linux keeps
    that across `exec`, so a worker forked from a large parent would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- engines (worker processes) -----------------------------------------------------------


def _token_engine(engine: str, work: Path, args: argparse.Namespace) -> Any:
    """A function batch ids [b, s] -> token lists, for the engines that take token ids."""
    if engine == "hf-eager":
        import torch
        from transformers import BartForConditionalGeneration

        torch.set_num_threads(args.threads)
        model = BartForConditionalGeneration.from_pretrained(work / "hf").eval()

        def hf(ids: np.ndarray) -> list[list[int]]:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=torch.from_numpy(ids),
                    attention_mask=torch.ones_like(torch.from_numpy(ids)),
                    num_beams=1,
                    do_sample=False,
                    min_new_tokens=args.new_tokens,
                    max_new_tokens=args.new_tokens,
                    decoder_start_token_id=DECODER_START,
                    forced_bos_token_id=FORCED_BOS,
                    forced_eos_token_id=None,
                    eos_token_id=EOS,
                    pad_token_id=PAD,
                )
            return [row[1:].tolist() for row in out]  # drop the decoder start token

        return hf
    # `-lanes`: the threads as LANES parts of a batch run side by side, one thread each
    # (CTranslate2's `inter_threads` with sub-batches; Prism's `explain.lanes`).
    lanes = LANES if engine.endswith("-lanes") else 1
    engine = engine.removesuffix("-lanes")
    if engine.startswith("ct2-"):
        import ctranslate2

        translator = ctranslate2.Translator(
            str(work / "ct2"),
            device="cpu",
            compute_type=engine.removeprefix("ct2-").replace("fp32", "float32"),
            intra_threads=max(1, args.threads // lanes),
            inter_threads=lanes,
        )
        vocab = {f"t{i}": i for i in range(4, 60_000)} | {"<s>": 0, "<pad>": 1, "</s>": 2}

        def ct2(ids: np.ndarray) -> list[list[int]]:
            tokens = [[_token(i) for i in row] for row in ids.tolist()]
            out = translator.translate_batch(
                tokens,
                beam_size=1,
                target_prefix=[["<s>"]] * len(tokens),
                min_decoding_length=args.new_tokens,
                max_decoding_length=args.new_tokens,
                return_end_token=True,
                max_batch_size=-(-len(tokens) // lanes),  # sub-batches run on the inter threads
            )
            return [[vocab.get(t, 3) for t in r.hypotheses[0]] for r in out]

        return ct2
    from explain import artifacts
    from explain.decoding import DecodeRequest, GenerationIds
    from explain.lanes import threads_per_lane
    from explain.loading import open_variant, scales_per_call
    from explain.onnx_backend import EncodedBatch, OnnxSeq2Seq
    from model_store.store import ModelStore

    version = ModelStore(work / "store").resolve(NAME, "latest")
    onnx_dir = version.path / artifacts.ONNX_DIR
    variant = engine.removeprefix("prism-")
    threads = threads_per_lane(args.threads, lanes)
    encoder, decoder = open_variant(onnx_dir, variant, "cpu", threads)
    spec = artifacts.OnnxSpec.load(onnx_dir)
    backend = OnnxSeq2Seq(
        encoder,
        decoder,
        spec,
        GenerationIds(DECODER_START, EOS, PAD, FORCED_BOS),
        scales_per_call=scales_per_call(encoder, variant),
        lanes=lanes,
    )

    def prism(ids: np.ndarray) -> list[list[int]]:
        rows = ids.shape[0]
        batch = EncodedBatch(ids, np.ones_like(ids), np.zeros((rows, spec.d_model), np.float32))
        request = DecodeRequest([args.new_tokens] * rows, [()] * rows, args.new_tokens)
        return [c[0] for c in backend.generate(batch, request).decoded.candidates]

    return prism


# The engines that are the HTTP service, and the same request path called in-process, with
# the variant each runs.
HTTP_ENGINES = {"prism-http": "fp32", "prism-http-int8": "int8"}
DIRECT_ENGINES = {"prism-direct": "fp32", "prism-direct-int8": "int8"}


def _token(i: int) -> str:
    return {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}.get(i, f"t{i}")


def _server_env(args: argparse.Namespace, variant: str) -> dict[str, str]:
    return {
        "PRISM_MODEL_REF": "latest",
        "PRISM_PROVIDER": "cpu",
        # Random weights: no variant passes its gate, so fp32 is what the service serves;
        # int8 runs with its gate waived by the benchmark's own app (`benchmarks.ungated_app`).
        "PRISM_VARIANT": variant,
        "PRISM_BENCH_WAIVED_VARIANT": variant,
        "PRISM_INTRA_OP_THREADS": str(args.threads),
        "PRISM_MIN_NEW_TOKENS": str(args.new_tokens),
        "PRISM_SECOND_PASS_CANDIDATES": "1",
        # A bart-base batch of 32 runs for seconds on 2 CPU cores: the admission budget, the
        # deadline and the watchdog are set for that shape, as an operator would set them.
        "PRISM_MAX_BATCH_SIZE": "32",
        "PRISM_MAX_QUEUE_WAIT_MS": "120000",
        "PRISM_REQUEST_TIMEOUT_MS": "120000",
        "PRISM_INFERENCE_WATCHDOG_S": "300",
    }


def _direct_engine(work: Path, args: argparse.Namespace, variant: str) -> tuple[Any, str]:
    """The request path called in-process on `variant`'s graphs, and the variant it loaded."""
    from explain import artifacts
    from explain.explainer import DecodeSettings
    from explain.input_format import check_format
    from explain.items import Item
    from explain.loading import load_onnx_explainer
    from explain.types import ExplainJob
    from model_store.store import ModelStore

    version = ModelStore(work / "store").resolve(NAME, "latest")
    explainer = load_onnx_explainer(
        version.path,
        name=NAME,
        version=version.version,
        input_config=check_format(version.manifest.input_format.model_dump()),
        generation=version.manifest.generation,
        provider="cpu",
        intra_op_threads=args.threads,
        decode=DecodeSettings(
            max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, candidates=1
        ),
        variant=variant,
        # random weights pass no gate: waived, as the HTTP engines' app waives it
        servable=artifacts.VARIANTS,
    )

    def direct(requests: list[dict[str, Any]]) -> list[list[int]]:
        jobs = [
            ExplainJob(
                r["user_id"],
                tuple(Item.from_dict(h) for h in r["history"]),
                Item.from_dict(r["recommended_item"]),
                r["options"]["max_new_tokens"],
            )
            for r in requests
        ]
        return [list(e.token_ids) for e in explainer.explain(jobs)]

    return direct, explainer.info.variant


def _timed_batches(run: Any, batch: Any, times: int) -> tuple[list[float], Any]:
    """`times` timed runs of `batch` after a warm-up one: their seconds and the first's
    tokens."""
    run(batch)  # warm-up for the batch shape
    elapsed, tokens = [], None
    for _ in range(times):
        started = time.perf_counter()
        out = run(batch)
        elapsed.append(time.perf_counter() - started)
        tokens = out if tokens is None else tokens
    return elapsed, tokens


def _run_timed(
    run: Any, inputs: Any, b1: int, b32: Any, tokens_of: Any, b32_batches: int
) -> dict[str, dict[str, Any]]:
    run(inputs[:1])  # warm-up
    latencies, tokens = [], []
    for k in range(b1):
        started = time.perf_counter()
        out = run(inputs[k : k + 1])
        latencies.append(time.perf_counter() - started)
        tokens += out
    elapsed, batch_tokens = _timed_batches(run, b32, b32_batches)
    return {
        "1": {"latencies_s": latencies, "tokens": tokens},
        "32": {"latencies_s": elapsed, "tokens": batch_tokens, "rows": tokens_of(b32)},
    }


def worker(engine: str, work: Path, args: argparse.Namespace, result: Path) -> None:
    b1 = args.b1_requests
    out: dict[str, Any] = {"engine": engine}
    if engine in HTTP_ENGINES:
        out.update(_http_worker(work, args, HTTP_ENGINES[engine]))
    elif engine in DIRECT_ENGINES:
        requests = json.loads((work / "requests.json").read_text())
        direct, out["served_variant"] = _direct_engine(work, args, DIRECT_ENGINES[engine])
        out["batches"] = _run_timed(
            direct,
            requests,
            b1,
            requests[b1 : b1 + 32],
            len,
            args.b32_batches,
        )
        out["peak_rss_mb"] = _peak_rss_mb()
    else:
        ids = np.load(work / "ids.npy")
        out["batches"] = _run_timed(
            _token_engine(engine, work, args),
            ids,
            b1,
            ids[b1 : b1 + 32],
            lambda a: a.shape[0],
            args.b32_batches,
        )
        out["peak_rss_mb"] = _peak_rss_mb()
    result.write_text(json.dumps(out))


def _http_worker(work: Path, args: argparse.Namespace, variant: str) -> dict[str, Any]:
    import httpx

    from benchmarks.server import running_server

    requests = json.loads((work / "requests.json").read_text())
    b1 = args.b1_requests
    # Random weights: the variant gate (int8) and a parity miss on near-equal logits are waived
    # for every variant alike (`benchmarks.ungated_app`).
    app = "benchmarks.ungated_app:create_app"
    log = work / f"server-{variant}.log"
    with running_server(work / "store", NAME, _server_env(args, variant), log, app) as server:
        with httpx.Client(base_url=server.base_url, timeout=300) as client:

            def one(body: dict[str, Any]) -> list[int]:
                response = client.post("/v1/explanations", json=body)
                response.raise_for_status()
                return [response.json()["usage"]["output_tokens"]]

            served = client.get("/v1/models").json()["models"][0]["variant"]
            one(requests[0])
            latencies, tokens = [], []
            for body in requests[:b1]:
                started = time.perf_counter()
                tokens.append(one(body))
                latencies.append(time.perf_counter() - started)

        async def concurrent(batch: list[dict[str, Any]]) -> list[list[int]]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:
                responses = await asyncio.gather(
                    *(client.post("/v1/explanations", json=b) for b in batch)
                )
            return [[r.json()["usage"]["output_tokens"]] for r in responses]

        batch = requests[b1 : b1 + 32]
        elapsed, batch_tokens = _timed_batches(
            lambda b: asyncio.run(concurrent(b)), batch, args.b32_batches
        )
        peak = server.peak_rss_mb()
    return {
        "batches": {
            "1": {"latencies_s": latencies, "tokens": tokens},
            "32": {"latencies_s": elapsed, "tokens": batch_tokens, "rows": 32},
        },
        "peak_rss_mb": peak,
        "served_variant": served,
    }
