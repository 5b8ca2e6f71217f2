"""Build the ONNX Runtime `Explainer` for a model version directory.

The caller has verified the directory (the service and the bulk job resolve it through the
model store, which checks every file's sha256) and passes what the manifest says: the
input format and the generation ids. Everything that must agree between the files is
checked here, and a mismatch is refused with a message that names both sides.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from explain import artifacts
from explain.decoding import GenerationIds
from explain.errors import ModelLoadError
from explain.explainer import DEFAULT_DECODE, DecodeSettings, Explainer
from explain.input_format import FORMAT_NAME, FORMAT_VERSION, InputConfig
from explain.onnx_backend import OnnxSeq2Seq
from explain.session import ProviderChoice, open_sessions
from explain.tokenizer import PrismTokenizer
from explain.types import ModelInfo
from explain.users import UserTable
from explain.verifier import Verifier, load_inventory

logger = logging.getLogger(__name__)


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
    graphs: tuple[Path, Path] | None = None,
) -> Explainer:
    """`onnx_dir` holds the graphs and their `export.json` (default: the version's `onnx/`);
    `graphs` replaces the encoder and decoder files (benchmarks pass variants)."""
    where = f"{name}@{version}"
    onnx_dir = onnx_dir or version_dir / artifacts.ONNX_DIR
    encoder_path, decoder_path = graphs or (
        onnx_dir / artifacts.ENCODER_FILE,
        onnx_dir / artifacts.DECODER_FILE,
    )
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
    encoder, decoder = open_sessions(
        [encoder_path, decoder_path], choice=provider, intra_op_threads=intra_op_threads
    )
    backend = OnnxSeq2Seq(encoder, decoder, spec, GenerationIds.from_mapping(generation))
    info = ModelInfo(
        name=name,
        version=version,
        provider=encoder.device,
        input_format=f"{FORMAT_NAME}/{FORMAT_VERSION}",
        num_users=users.num_users,
        d_model=spec.d_model,
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
        "loaded %s on %s (%d users, d_model=%d, io_binding=%s)",
        where,
        info.provider,
        info.num_users,
        info.d_model,
        decoder.io_binding,
    )
    return explainer
