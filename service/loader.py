"""Load the explainer for a verified model version, refusing settings that do not fit it.

A version without ONNX artifacts is exported first, by running `prism-train export` as a
separate process (it needs the training extra, torch included, which the service itself
never imports), and the graphs are cached in the store.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from typing import TYPE_CHECKING

from explain import artifacts
from explain.errors import ModelLoadError
from explain.explainer import DecodeSettings, Explainer
from explain.input_format import check_format
from explain.loading import load_onnx_explainer
from explain.session import ProviderChoice, set_spinning
from model_store.store import ModelStore
from model_store.version import ModelVersion

if TYPE_CHECKING:
    from service.settings import Settings

logger = logging.getLogger(__name__)
ONNX_PATHS = (artifacts.ENCODER_PATH, artifacts.DECODER_PATH, artifacts.SPEC_PATH)

__all__ = ["ModelLoadError", "ensure_onnx", "load_explainer", "load_served_explainer"]


def ensure_onnx(store: ModelStore, version: ModelVersion, *, auto_export: bool) -> ModelVersion:
    """A version with ONNX artifacts: as published, or exported now and cached in the store."""
    if all(version.has_file(p) for p in ONNX_PATHS):
        return version
    where = f"{version.name}@{version.version}"
    if not auto_export:
        raise ModelLoadError(f"{where} has no ONNX artifacts and PRISM_AUTO_EXPORT is off")
    logger.info("%s has no ONNX artifacts: exporting and caching them in the store", where)
    command = [
        sys.executable,
        "-m",
        "training.cli",
        "export",
        f"{version.name}@{version.version}",
        "--store",
        str(store.root),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelLoadError(
            f"{where} has no ONNX artifacts and exporting them failed (exporting needs the "
            f"training extra: pip install '.[train]'): {detail[0]}"
        )
    exported = store.resolve(version.name, version.version)
    if not exported.manifest.parity_passed:
        raise ModelLoadError(
            f"{where}: the exported graphs failed the parity check; refusing to serve them"
        )
    return exported


def load_explainer(
    store: ModelStore,
    version: ModelVersion,
    *,
    provider: ProviderChoice,
    variant: str,
    intra_op_threads: int,
    max_history: int,
    max_input_tokens: int | None,
    max_new_tokens_limit: int,
    decode: DecodeSettings,
    auto_export: bool,
    lanes: int = 1,
) -> Explainer:
    """The explainer for a verified version. The service may tighten the model's own input
    limits, never loosen them; a token limit beyond the model's positions is refused."""
    config = check_format(version.manifest.input_format.model_dump())
    config = dataclasses.replace(
        config,
        max_history=min(config.max_history, max_history),
        max_input_tokens=min(config.max_input_tokens, max_input_tokens or config.max_input_tokens),
    )
    version = ensure_onnx(store, version, auto_export=auto_export)
    explainer = load_onnx_explainer(
        version.path,
        name=version.name,
        version=version.version,
        input_config=config,
        generation=version.manifest.generation,
        provider=provider,
        intra_op_threads=intra_op_threads,
        decode=decode,
        variant=variant,
        servable=[k for k, v in version.manifest.variants.items() if v.servable],
        lanes=lanes,
    )
    if max_new_tokens_limit > explainer.max_new_tokens_limit:
        raise ModelLoadError(
            f"{version.name}@{version.version}: PRISM_MAX_NEW_TOKENS_LIMIT "
            f"{max_new_tokens_limit} exceeds what the model can generate "
            f"({explainer.max_new_tokens_limit} tokens); lower the setting"
        )
    return explainer


def load_served_explainer(
    store: ModelStore,
    version: ModelVersion,
    settings: Settings,
    *,
    intra_op_threads: int | None = None,
) -> Explainer:
    """`version` as these settings serve it: refused without a passing parity check, then
    loaded with the settings' provider, limits and decoding. The service's lifespan and bulk
    jobs (`bulk.explain_job`) both load through here; `intra_op_threads` overrides the
    setting (a bulk worker shares the machine with its siblings)."""
    if not version.manifest.parity_passed:
        raise ModelLoadError(
            f"{version.name}@{version.version} has no passing parity check; not serving it"
        )
    set_spinning(settings.intra_op_spinning)
    return load_explainer(
        store,
        version,
        provider=settings.provider,
        variant=settings.variant,
        intra_op_threads=settings.intra_op_threads
        if intra_op_threads is None
        else intra_op_threads,
        max_history=settings.max_history,
        max_input_tokens=settings.max_input_tokens,
        max_new_tokens_limit=settings.max_new_tokens_limit,
        decode=settings.decode(),
        auto_export=settings.auto_export,
        lanes=settings.decode_lanes,
    )
