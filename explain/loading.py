"""Build the ONNX Runtime `Explainer` for a model version directory.

The caller has verified the directory (the service and the bulk job resolve it through the
model store, which checks every file's sha256) and passes what the manifest says: the
input format and the generation ids. Everything that must agree between the files is
checked here, and a mismatch is refused with a message that names both sides.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from explain import artifacts
from explain.decoding import GenerationIds
from explain.errors import ModelLoadError
from explain.explainer import DEFAULT_DECODE, DecodeSettings, Explainer
from explain.host_memory import release_freed_memory
from explain.input_format import FORMAT_NAME, FORMAT_VERSION, InputConfig
from explain.lanes import threads_per_lane
from explain.onnx_backend import OnnxSeq2Seq
from explain.session import (
    Device,
    OnnxSession,
    ProviderChoice,
    open_sessions,
    resolve_provider,
)
from explain.tokenizer import PrismTokenizer
from explain.types import ModelInfo
from explain.users import UserTable
from explain.verifier import Verifier, load_inventory

logger = logging.getLogger(__name__)

VariantChoice = Literal["auto", "fp32", "int8", "fp16"]
# What `auto` serves where its gate passed: int8 weights on CPU, half precision on CUDA.
PREFERRED: Mapping[Device, str] = {"cpu": artifacts.INT8, "cuda": artifacts.FP16}


def choose_variant(choice: str, device: Device, servable: Collection[str]) -> str:
    """The precision variant to serve. fp32 is always servable (it is what parity proved);
    another variant only where the manifest says it passed its gate (`training.variants`)."""
    if choice == "auto":
        preferred = PREFERRED[device]
        return preferred if preferred in servable else artifacts.FP32
    if choice not in artifacts.VARIANTS:
        raise ModelLoadError(f"unknown precision variant {choice!r}")
    if choice != artifacts.FP32 and choice not in servable:
        raise ModelLoadError(
            f"the {choice} variant did not pass its gate for this version (or was never built); "
            "serve auto or fp32"
        )
    return choice


def open_variant(
    onnx_dir: Path, variant: str, provider: ProviderChoice, intra_op_threads: int
) -> tuple[OnnxSession, OnnxSession]:
    """The encoder and decoder sessions of `variant`, sharing its embedding table file."""
    names = artifacts.variant_files(variant)
    table = onnx_dir / artifacts.shared_embedding_file(variant)
    encoder, decoder = open_sessions(
        [onnx_dir / names[0], onnx_dir / names[1]],
        choice=provider,
        intra_op_threads=intra_op_threads,
        shared_files={artifacts.SHARED_EMBEDDING: table} if table.is_file() else None,
    )
    # Loading parses each graph into memory and frees it: give those pages back now, or the
    # process keeps them as its floor (about 40 MB for the bart-base int8 graphs).
    release_freed_memory()
    return encoder, decoder


def scales_per_call(encoder: OnnxSession, variant: str) -> bool:
    """Whether `variant`'s encoder scales its activations per call (the int8
    `dynamic-encoder` recipe), as the graph's metadata says. An int8 graph without that
    metadata (published before it existed) is assumed to."""
    scales = encoder.metadata.get(artifacts.ACTIVATION_SCALES)
    return variant == artifacts.INT8 and scales != artifacts.PER_ROW


def load_onnx_explainer(
    version_dir: Path,
    *,
    name: str,
    version: str,
    input_config: InputConfig,
    generation: Mapping[str, Any],
    provider: ProviderChoice = "cpu",
    intra_op_threads: int = 0,
    decode: DecodeSettings = DEFAULT_DECODE,
    onnx_dir: Path | None = None,
    variant: str = artifacts.FP32,
    servable: Collection[str] = (),
    lanes: int = 1,
) -> Explainer:
    """`onnx_dir` holds the graphs and their `export.json` (default: the version's `onnx/`).
    `variant` is a precision variant or `auto`; `servable` names the variants whose gate
    passed (the manifest's word: fp32 needs none). `lanes` > 1 splits batches on CPU
    (`explain.lanes`): each session gets its share of `intra_op_threads`."""
    where = f"{name}@{version}"
    onnx_dir = onnx_dir or version_dir / artifacts.ONNX_DIR
    spec = artifacts.OnnxSpec.load(onnx_dir)
    tokenizer = PrismTokenizer.from_file(version_dir / artifacts.TOKENIZER_DIR)
    users = UserTable.load(version_dir / artifacts.USERS_DIR)
    if users.d_model != spec.d_model or tokenizer.vocab_size > spec.vocab_size:
        raise ModelLoadError(
            f"{where}: the user table (d={users.d_model}) or tokenizer "
            f"(vocab={tokenizer.vocab_size}) does not fit the graphs "
            f"(d={spec.d_model}, vocab={spec.vocab_size})"
        )
    if input_config.max_input_tokens > spec.max_positions:
        raise ModelLoadError(
            f"{where}: max_input_tokens {input_config.max_input_tokens} exceeds the model's "
            f"{spec.max_positions} positions"
        )
    chosen = choose_variant(variant, resolve_provider(provider), servable)
    cpu_threads = threads_per_lane(intra_op_threads, lanes)
    threads = cpu_threads if resolve_provider(provider) == "cpu" else intra_op_threads
    encoder, decoder = open_variant(onnx_dir, chosen, provider, threads)
    if variant == "auto" and encoder.device != resolve_provider(provider):
        # CUDA did not load and ORT fell back to CPU: serve what `auto` picks for CPU.
        fallback = choose_variant(variant, encoder.device, servable)
        if fallback != chosen:
            chosen = fallback
            encoder, decoder = open_variant(onnx_dir, chosen, encoder.device, cpu_threads)
    backend = OnnxSeq2Seq(
        encoder,
        decoder,
        spec,
        GenerationIds.from_mapping(generation),
        scales_per_call=scales_per_call(encoder, chosen),
        lanes=lanes,
    )
    if backend.lanes.count > 1 and chosen != artifacts.INT8:
        # Each lane reads every weight at every step, likely why float graphs ran slower with
        # lanes (fp32, bart-base, 16 rows: 0.80x the requests per second).
        logger.warning(
            "%s: %d decode lanes on %s graphs: measured slower than one lane on float "
            "weights; lanes pay with the int8 variant",
            where,
            backend.lanes.count,
            chosen,
        )
    info = ModelInfo(
        name=name,
        version=version,
        provider=encoder.device,
        input_format=f"{FORMAT_NAME}/{FORMAT_VERSION}",
        num_users=users.num_users,
        d_model=spec.d_model,
        variant=chosen,
        lanes=backend.lanes.count,
    )
    try:
        explainer = Explainer(
            backend,
            tokenizer,
            users,
            input_config,
            info,
            decode=decode,
            verifier=Verifier(load_inventory(version_dir)),
        )
    except ValueError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    logger.info(
        "loaded %s on %s, %s graphs, %d lane(s) (%d users, d_model=%d, io_binding=%s)",
        where,
        info.provider,
        chosen,
        backend.lanes.count,
        info.num_users,
        info.d_model,
        decoder.io_binding,
    )
    return explainer
