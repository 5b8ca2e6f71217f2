"""Publish a trained model directory: export to ONNX, prove parity, publish, promote.

Needs the `train` extra (torch). `export_version` also serves `prism-train export`, which the
service runs (as a separate process: it never imports this package) when it loads a version
that has no ONNX artifacts.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from explain import artifacts
from explain.explainer import DecodeSettings
from model_store.store import PRODUCTION, ModelStore
from model_store.version import ModelVersion
from training.modeling import PrismMeta
from training.parity import ParityReport, export_with_parity
from training.variants import VariantCheck, gate_variants

logger = logging.getLogger(__name__)


def _exported(
    model_dir: Path, onnx_dir: Path, decode: DecodeSettings | None = None
) -> ParityReport:
    report = export_with_parity(model_dir, onnx_dir, decode=decode)
    level = logging.INFO if report.passed else logging.ERROR
    logger.log(level, "parity %s: %s", "passed" if report.passed else "FAILED", report.to_dict())
    return report


def manifest_fields(
    meta: PrismMeta,
    *,
    eval_metrics: Mapping[str, Any],
    parity: ParityReport | None,
    variants: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "base_model": meta.base_model,
        "input_format": meta.input_format,
        "d_model": meta.d_model,
        "num_users": meta.num_users,
        "generation": meta.generation,
        "eval": dict(eval_metrics),
        "parity": parity.to_dict() if parity else None,
        "extra": dict(meta.extra),
        "variants": dict(variants or {}),
    }


def publish_model(
    store: ModelStore,
    name: str,
    model_dir: Path,
    *,
    eval_metrics: Mapping[str, Any],
    aliases: Sequence[str] = (PRODUCTION,),
    version: str | None = None,
    variant_check: VariantCheck | None = None,
    decode: DecodeSettings | None = None,
    variants_despite_parity: bool = False,
) -> tuple[ModelVersion, ParityReport]:
    """Export + parity into `model_dir/onnx`, the precision variants and their gate (when
    `variant_check` says what to judge them on), publish, and set `aliases`.

    `production` is only set when parity passed; a failing version is still published (so it
    can be inspected) but never promoted, and the report says why. `decode` is what parity
    and the gate decode with (default: the service's defaults). The variants are built only
    after parity passed, unless `variants_despite_parity` (benchmarks of random weights,
    whose near-equal logits can tip either way on another CPU's float sums).
    """
    report = _exported(model_dir, model_dir / artifacts.ONNX_DIR, decode)
    meta = PrismMeta.load(model_dir)
    variants = (
        gate_variants(model_dir, variant_check, decode=decode)
        if (report.passed or variants_despite_parity) and variant_check is not None
        else {}
    )
    wanted = [a for a in aliases if report.passed or a != PRODUCTION]
    published = store.publish(
        name,
        model_dir,
        version=version,
        manifest_fields=manifest_fields(
            meta, eval_metrics=eval_metrics, parity=report, variants=variants
        ),
        aliases=wanted,
    )
    if not report.passed:
        logger.error(
            "%s@%s failed parity and was not promoted: %s",
            name,
            published.version,
            report.first_mismatch,
        )
    return published, report


def export_version(store: ModelStore, version: ModelVersion) -> ModelVersion:
    """Export a published version that lacks ONNX artifacts and cache them in the store."""
    with tempfile.TemporaryDirectory(prefix="prism-export-") as tmp:
        onnx_dir = Path(tmp) / artifacts.ONNX_DIR
        report = _exported(version.path, onnx_dir)
        names = [*artifacts.ONNX_FILES, artifacts.shared_embedding_file(artifacts.FP32)]
        files = {
            f"{artifacts.ONNX_DIR}/{f}": onnx_dir / f for f in names if (onnx_dir / f).is_file()
        }
        return store.add_artifacts(
            version.name, version.version, files, {"parity": report.to_dict()}
        )
