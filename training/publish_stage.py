"""The pipeline's publish stage: the best full model (with its evaluation) as a new store
version, through ONNX export, parity and the precision variants, promoted to production when
every quality bar passed (or `--force`); a resumed run finds what an earlier one published."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store.store import PRODUCTION, ModelStore
from model_store.version import ModelVersion
from training.config import PipelineConfig
from training.data.types import Dataset

logger = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    pass


def published_version(
    config: PipelineConfig, store_dir: Path, work_dir: Path
) -> ModelVersion | None:
    """The version an earlier run of this work dir published, if the store still has it."""
    from model_store.store import StoreError

    marker = work_dir / "publish.done.json"
    if not marker.exists():
        return None
    version = json.loads(marker.read_text())["version"]
    try:
        found = ModelStore(store_dir).resolve(config.name, version)
    except StoreError:
        return None
    logger.info("stage publish: already done (%s@%s)", found.name, found.version)
    return found


def stage_publish(
    config: PipelineConfig,
    store_dir: Path,
    work_dir: Path,
    evaluation: Mapping[str, Any],
    dataset: Dataset,
) -> ModelVersion:
    from training.evaluate_stage import variant_check
    from training.evaluation import bars_passed
    from training.publishing import publish_model

    release = work_dir / "release"
    shutil.rmtree(release, ignore_errors=True)
    shutil.copytree(work_dir / "full" / "best", release)
    shutil.copytree(work_dir / "eval", release / "eval")
    bars = evaluation["bars"]
    passed = bars_passed(bars)
    aliases = (PRODUCTION,) if passed or config.force else ()
    metrics = {**evaluation["manifest_eval"], "quality_bars_passed": passed}
    # Which training attempt this is (`run_pipeline` trains again when a bar is missed).
    metrics["training_seed"] = evaluation.get("training_seed", config.train.seed)
    if "attempts" in evaluation:
        metrics["training_attempts"] = evaluation["attempts"]
    version, parity = publish_model(
        ModelStore(store_dir),
        config.name,
        release,
        eval_metrics=metrics,
        aliases=aliases,
        variant_check=variant_check(config, dataset, work_dir, evaluation["systems"]),
    )
    if not parity.passed:
        raise QualityGateError(
            f"{config.name}@{version.version} failed the parity check: {parity.first_mismatch}"
        )
    marker = {"version": version.version, "promoted": bool(aliases)}
    (work_dir / "publish.done.json").write_text(json.dumps(marker))
    if not passed:
        failed = ", ".join(
            f"{k}={v['value']} (bar {v['bar']})" for k, v in bars.items() if v["passed"] is False
        )
        if not config.force:
            raise QualityGateError(
                f"{config.name}@{version.version} published but not promoted: {failed} "
                "(--force promotes it anyway)"
            )
        logger.warning("%s@%s promoted with --force: %s", config.name, version.version, failed)
    return version
