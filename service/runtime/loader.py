"""Build the ONNX explanation engine for a verified model version."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from model_store import onnx_spec as spec
from model_store.prompt import InputConfig, check_format
from model_store.store import ModelStore, ModelVersion
from model_store.tokenizer import PrismTokenizer
from model_store.users import UserTable
from service.runtime.engine import ModelInfo
from service.runtime.explainer import OnnxExplainer
from service.runtime.generator import GenerationIds, Seq2SeqGenerator
from service.runtime.session import ProviderChoice, open_sessions

logger = logging.getLogger(__name__)
ENCODER_PATH = f"{spec.ONNX_DIR}/{spec.ENCODER_FILE}"
DECODER_PATH = f"{spec.ONNX_DIR}/{spec.DECODER_FILE}"
SPEC_PATH = f"{spec.ONNX_DIR}/{spec.SPEC_FILE}"


class ModelLoadError(RuntimeError):
    pass


def ensure_onnx(store: ModelStore, version: ModelVersion, *, auto_export: bool) -> ModelVersion:
    """A version with ONNX artifacts: as published, or exported now and cached in the store."""
    if all(version.has_file(p) for p in (ENCODER_PATH, DECODER_PATH, SPEC_PATH)):
        return version
    where = f"{version.name}@{version.version}"
    if not auto_export:
        raise ModelLoadError(f"{where} has no ONNX artifacts and PRISM_AUTO_EXPORT is off")
    try:
        from model_store.publishing import export_version
    except ImportError as exc:  # torch / transformers absent: the serving-only install
        raise ModelLoadError(
            f"{where} has no ONNX artifacts, and exporting them needs the training extra "
            f"(pip install '.[train]'): {exc}"
        ) from exc
    logger.info("%s has no ONNX artifacts: exporting and caching them in the store", where)
    exported = export_version(store, version)
    if not (exported.manifest.parity or {}).get("passed"):
        raise ModelLoadError(
            f"{where}: the exported graphs failed the parity check; refusing to serve them"
        )
    return exported


def load_engine(
    store: ModelStore,
    version: ModelVersion,
    *,
    provider: ProviderChoice,
    intra_op_threads: int,
    max_history: int,
    max_input_tokens: int | None,
    auto_export: bool,
    min_new_tokens: int = 0,
) -> OnnxExplainer:
    """The engine for a verified version, exporting its ONNX graphs first if it has none."""
    config = check_format(version.manifest.input_format)
    # The service may tighten the model's own limits, never loosen them.
    config = dataclasses.replace(
        config,
        max_history=min(config.max_history, max_history),
        max_input_tokens=min(config.max_input_tokens, max_input_tokens or config.max_input_tokens),
    )
    version = ensure_onnx(store, version, auto_export=auto_export)
    return build_engine(
        version,
        graphs=(version.file(ENCODER_PATH), version.file(DECODER_PATH)),
        provider=provider,
        intra_op_threads=intra_op_threads,
        input_config=config,
        min_new_tokens=min_new_tokens,
    )


def build_engine(
    version: ModelVersion,
    *,
    graphs: tuple[Path, Path],
    provider: ProviderChoice,
    intra_op_threads: int,
    input_config: InputConfig,
    min_new_tokens: int = 0,
) -> OnnxExplainer:
    """An engine over the given encoder/decoder graphs (benchmarks pass quantised ones)."""
    manifest = version.manifest
    encoder, decoder = open_sessions(
        list(graphs), choice=provider, intra_op_threads=intra_op_threads
    )
    onnx = spec.OnnxSpec.load(version.path / spec.ONNX_DIR)
    tokenizer = PrismTokenizer.from_file(version.path / "tokenizer")
    users = UserTable.load(version.path / "users")
    if users.d_model != onnx.d_model or tokenizer.vocab_size > onnx.vocab_size:
        raise ModelLoadError(
            f"{version.name}@{version.version}: the user table (d={users.d_model}) or tokenizer "
            f"(vocab={tokenizer.vocab_size}) does not fit the graphs "
            f"(d={onnx.d_model}, vocab={onnx.vocab_size})"
        )
    if input_config.max_input_tokens > onnx.max_positions:
        raise ModelLoadError(
            f"max_input_tokens {input_config.max_input_tokens} exceeds the model's "
            f"{onnx.max_positions} positions"
        )
    generator = Seq2SeqGenerator(
        encoder, decoder, onnx, GenerationIds.from_manifest(manifest.generation)
    )
    info = ModelInfo(
        name=version.name,
        version=version.version,
        provider=encoder.provider,
        input_format=f"{manifest.input_format['name']}/{manifest.input_format['version']}",
        num_users=users.num_users,
        d_model=onnx.d_model,
    )
    logger.info(
        "loaded %s@%s on %s (%d users, d_model=%d, io_binding=%s)",
        info.name,
        info.version,
        info.provider,
        info.num_users,
        info.d_model,
        generator.io_binding,
    )
    return OnnxExplainer(
        generator,
        tokenizer,
        users,
        input_config,
        info,
        min_new_tokens=min_new_tokens,
        max_new_tokens_cap=onnx.max_positions - 1,
    )
