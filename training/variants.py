"""Precision variants of the exported graphs, and the gate that decides whether one is served.

Two variants are made from the fp32 graphs at publish time:

- **int8** (for CPU): every MatMul with a constant weight becomes ONNX Runtime's
  `MatMulNBits` with 8-bit weights in blocks of 16 along the reduction axis, one scale per
  block, computed with int8 activations (`accuracy_level=4`); the embedding tables become
  int8 with one scale per tensor, dequantised after the lookup. Per-block scales are what
  keep argmax agreement. Measured on the default model's gate set (1,960 requests): plain
  dynamic quantisation (`quantize_dynamic`, one scale per weight tensor) left about 96 %
  of answers identical, blocks of 32 97.96 %, blocks of 32 with an fp32 LM head 98.21 %,
  blocks of 16 98.27 %; `accuracy_level=0` (fp32 compute) was several times slower.
- **fp16** (for CUDA): every float tensor, weights, activations and the KV cache, in half
  precision (`onnxruntime.transformers.float16`); inputs are cast by `explain.session`.

A variant is **servable** only if, on the model's own held-out requests (the evaluation's test
requests, for known users and for the zero vector, and its messy requests), at least
`MIN_IDENTICAL` of its answers are token-for-token those of fp32, and every quality bar still
passes when scored on its answers. Both figures go into the manifest; `explain.loading`
refuses a variant the manifest does not call servable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from explain import artifacts
from explain.explainer import DecodeSettings, Explainer
from explain.loading import load_onnx_explainer
from explain.types import ExplainJob, Explanation
from training.modeling import PrismMeta

logger = logging.getLogger(__name__)

MIN_IDENTICAL = 0.98  # share of answers that must be token-for-token fp32's
BLOCK_SIZE = 16
METHODS = {
    artifacts.INT8: f"MatMulNBits int8 weights (blocks of {BLOCK_SIZE}, int8 compute) "
    "+ int8 embedding tables",
    artifacts.FP16: "float16 weights, activations and KV cache",
}
# Quality bars scored on a variant's answers to `VariantCheck.jobs`, in that order.
BarsFn = Callable[[Sequence[Explanation]], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class VariantCheck:
    """What a variant is judged on: held-out requests, and the quality bars of its answers."""

    jobs: Sequence[ExplainJob]
    bars: BarsFn | None = None  # None: agreement only (the bars need the training data set)


@dataclass(frozen=True)
class Agreement:
    compared: int
    sequences_identical: float
    tokens_identical: float


def agreement(reference: Sequence[Explanation], candidate: Sequence[Explanation]) -> Agreement:
    """Sequence level: identical token lists. Token level: positions with the same token,
    over the longer of the two sequences (a sequence cut short counts its missing tokens)."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference answers but {len(candidate)} candidates")
    same = sum(a.token_ids == b.token_ids for a, b in zip(reference, candidate, strict=True))
    matched = total = 0
    for a, b in zip(reference, candidate, strict=True):
        matched += sum(x == y for x, y in zip(a.token_ids, b.token_ids, strict=False))
        total += max(len(a.token_ids), len(b.token_ids))
    count = len(reference)
    return Agreement(count, same / count if count else 0.0, matched / total if total else 0.0)


@contextmanager
def _quiet_quantisers() -> Iterator[None]:
    """The quantisers log a pre-processing hint per graph (on the root logger) and a line per
    node: silence them while they run, and only them."""
    nbits = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    hint = _DropHint()
    saved = nbits.level
    nbits.setLevel(logging.ERROR)
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        nbits.setLevel(saved)
        logging.getLogger().removeFilter(hint)


class _DropHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK_SIZE,
        is_symmetric=True,
        accuracy_level=4,
        bits=8,
        op_types_to_quantize=("MatMul",),
    )
    quantiser = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
    quantiser.process()
    staged = target.with_suffix(".matmul.onnx")
    quantiser.model.save_model_to_file(str(staged), False)
    try:
        # MatMulNBits only quantises Gather to 4 bits; 8-bit tables go through the
        # QOperator Gather path (int8 data, DequantizeLinear after the lookup).
        quantize_dynamic(
            str(staged), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"]
        )
    finally:
        staged.unlink(missing_ok=True)


def _fp16(source: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=False), str(target))


def build_variant(variant: str, onnx_dir: Path) -> tuple[Path, Path]:
    """Write `variant`'s encoder and decoder next to the fp32 graphs in `onnx_dir`."""
    build = {artifacts.INT8: _int8, artifacts.FP16: _fp16}[variant]
    paths = []
    with _quiet_quantisers():
        for fp32_name, name in zip(
            artifacts.variant_files(artifacts.FP32), artifacts.variant_files(variant), strict=True
        ):
            build(onnx_dir / fp32_name, onnx_dir / name)
            paths.append(onnx_dir / name)
    return paths[0], paths[1]


def _explainer(model_dir: Path, variant: str, decode: DecodeSettings) -> Explainer:
    from explain.input_format import check_format

    meta = PrismMeta.load(model_dir)
    return load_onnx_explainer(
        model_dir,
        name=model_dir.name,
        version=f"unpublished ({variant})",
        input_config=check_format(meta.input_format),
        generation=meta.generation,
        provider="cpu",
        decode=decode,
        variant=variant,
        servable=artifacts.VARIANTS,  # under test: the gate has not ruled yet
    )


def gate_variants(
    model_dir: Path,
    check: VariantCheck,
    *,
    variants: Sequence[str] = (artifacts.INT8, artifacts.FP16),
    decode: DecodeSettings | None = None,
) -> dict[str, dict[str, Any]]:
    """Build each variant in `model_dir/onnx`, judge it, and return the manifest records."""
    settings = decode or DecodeSettings()
    start = time.perf_counter()
    expected = _explainer(model_dir, artifacts.FP32, settings).explain_all(check.jobs)
    records: dict[str, dict[str, Any]] = {}
    for variant in variants:
        encoder, decoder = build_variant(variant, model_dir / artifacts.ONNX_DIR)
        answers = _explainer(model_dir, variant, settings).explain_all(check.jobs)
        agreed = agreement(expected, answers)
        bars = dict(check.bars(answers)) if check.bars is not None else None
        failed = sorted(k for k, v in (bars or {}).items() if v.get("passed") is False)
        reasons = []
        if agreed.sequences_identical < MIN_IDENTICAL:
            reasons.append(
                f"{agreed.sequences_identical:.2%} of answers identical to fp32 "
                f"(needs {MIN_IDENTICAL:.0%})"
            )
        if failed:
            reasons.append("quality bars failed: " + ", ".join(failed))
        if bars is None:
            reasons.append("quality bars not run")
        record = {
            "encoder": f"{artifacts.ONNX_DIR}/{encoder.name}",
            "decoder": f"{artifacts.ONNX_DIR}/{decoder.name}",
            "method": METHODS[variant],
            "compared": agreed.compared,
            "sequences_identical": round(agreed.sequences_identical, 4),
            "tokens_identical": round(agreed.tokens_identical, 4),
            "bars_passed": None if bars is None else not failed,
            "failed_bars": failed,
            "servable": not reasons,
            "reason": "; ".join(reasons),
        }
        records[variant] = record
        logger.info(
            "variant %s: %d requests, %.1f%% identical sequences, %.2f%% identical tokens, "
            "bars %s -> %s",
            variant,
            agreed.compared,
            100 * agreed.sequences_identical,
            100 * agreed.tokens_identical,
            "not run" if bars is None else ("passed" if not failed else "failed"),
            "servable" if not reasons else f"not servable ({record['reason']})",
        )
    logger.info("variants gated in %.0f s", time.perf_counter() - start)
    return records
