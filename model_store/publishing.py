"""Publish a trained model directory: export to ONNX, prove parity, publish, promote.

Needs the `train` extra (torch). The service calls `export_version` only when it loads a
version that has no ONNX artifacts; everything else runs offline.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from model_store import onnx_spec as spec
from model_store.export import export_onnx
from model_store.modeling import TOKENIZER_DIR, USERS_DIR, PrismMeta, UserAwareBart
from model_store.parity import ParityReport, check_parity
from model_store.prompt import check_format
from model_store.store import PRODUCTION, ModelStore, ModelVersion
from model_store.tokenizer import PrismTokenizer
from model_store.users import UserTable

logger = logging.getLogger(__name__)
ONNX_FILES = (spec.ENCODER_FILE, spec.DECODER_FILE, spec.SPEC_FILE)


def export_with_parity(model_dir: Path, onnx_dir: Path, *, num_inputs: int = 24) -> ParityReport:
    """Export `model_dir`'s model into `onnx_dir` and check ORT against PyTorch."""
    meta = PrismMeta.load(model_dir)
    model = UserAwareBart.load(model_dir)
    tokenizer = PrismTokenizer.from_file(model_dir / TOKENIZER_DIR)
    export_onnx(model, onnx_dir)
    table = UserTable.load(model_dir / USERS_DIR)
    known_rows = list(range(1, min(table.num_users, 12) + 1))
    report = check_parity(
        model,
        tokenizer,
        onnx_dir,
        meta.generation,
        check_format(meta.input_format),
        user_rows=known_rows,
        num_inputs=num_inputs,
    )
    level = logging.INFO if report.passed else logging.ERROR
    logger.log(level, "parity %s: %s", "passed" if report.passed else "FAILED", report.to_dict())
    return report


def manifest_fields(
    meta: PrismMeta, *, eval_metrics: Mapping[str, Any], parity: ParityReport | None
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
    }


def publish_model(
    store: ModelStore,
    name: str,
    model_dir: Path,
    *,
    eval_metrics: Mapping[str, Any],
    aliases: Sequence[str] = (PRODUCTION,),
    version: str | None = None,
) -> tuple[ModelVersion, ParityReport]:
    """Export + parity into `model_dir/onnx`, publish, and set `aliases`.

    `production` is only set when parity passed; a failing version is still published (so it
    can be inspected) but never promoted, and the report says why.
    """
    report = export_with_parity(model_dir, model_dir / spec.ONNX_DIR)
    meta = PrismMeta.load(model_dir)
    wanted = [a for a in aliases if report.passed or a != PRODUCTION]
    published = store.publish(
        name,
        model_dir,
        version=version,
        manifest_fields=manifest_fields(meta, eval_metrics=eval_metrics, parity=report),
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
        onnx_dir = Path(tmp) / spec.ONNX_DIR
        report = export_with_parity(version.path, onnx_dir)
        files = {f"{spec.ONNX_DIR}/{f}": onnx_dir / f for f in ONNX_FILES}
        return store.add_artifacts(
            version.name, version.version, files, {"parity": report.to_dict()}
        )
