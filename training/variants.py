"""Precision variants of the exported graphs, and the gate that decides whether one is served.

Two variants are made from the fp32 graphs at publish time:

- **int8** (for CPU), from the first recipe that passes the gate, tried in `INT8_RECIPES`
  order: 2e, 2d, 2c, 2b, `per-token-v8` (recipe 1 with the 8-bit cross values of recipe 2), 2a, 2,
  1, 3, 4, 5 (figures: share of the default model's 1,960 gate answers identical to fp32,
  2026-12-03 build, AVX2 host, unless said):
  1. `per-token` (`training.int8_tokens`): every MatMul with a constant weight on ONNX
     Runtime's integer GEMM, one activation scale per token, 7-bit per-channel weights; the
     LM head's best 8 candidates per row rescored against the int8 tied table; int8
     embedding rows, a scale each. A token's result is its own, whoever shares its batch.
     97.91 % (98.37 % in a build on an AVX-512 host).
  2. `per-token-split-v8` (`training.int8_values`): recipe 3 with the cross-attention values
     handed from the encoder to the decoder in 8 bits (a scale per token and head) and the
     attention output on the integer GEMM, so a running decode holds them in a quarter of
     the memory: 98.16 %; the int8 service at bart-base shape peaked at 594-596 MB against
     691-700 with recipe 3 (32 concurrent requests).
  2a. `per-token-split-decoder-v8`: recipe 2 with the encoder's second feed-forward layers
     in one product each, as in recipe 1 (the slices in the decoder only). On the
     2026-12-04 default model (Intel AVX-512 host) 98.37 % against recipe 2's 98.32 % and
     `per-token-v8`'s 97.70 %; at bart-base a static batch of 32 encoded in 0.52 s against
     0.69 (one lane of 2 threads) and 0.36 against 0.41 s (2 lanes).
  2b. `svd-head` (`training.int8_head`): recipe 2a with the LM head's pass over the
     vocabulary low-rank (SVD-softmax) and its best 32 candidates rescored: 98.32 % on the
     2026-12-05 default model; at bart-base batch 1 took 147 ms against 205 (the head is 44 %
     of a decode step's weight bytes, and at one row a step is bound by reading them).
  2c. `svd-head-k8` (`training.int8_keys`): recipe 2b with the cross keys in 8 bits too and
     the attention scores on the integer GEMM: 98.11 % on the 2026-12-05 default model; at
     bart-base a batch of 32 in two lanes ran 34.28 seq/s (a two-round run) against
     `svd-head`'s 31.19 (the full peer run half an hour before).
  2d. `svd-head-k8-inplace` (`training.int8_fused`): recipe 2c with the decoder's
     self-attention one `GroupQueryAttention` node over a cache the graph writes in place
     (no copies of it a step; `explain.kv_cache`) and the cross keys taken transposed (one
     query row by the source columns on the integer GEMM): 98.11 % on the 2026-12-05 default
     model (version 2026-12-05.5), as recipe 2c: all 1,960 gate answers were 2c's, token for
     token.
  2e. `svd-head-k8-lean` (`training.int8_lean`): recipe 2d with the decoder's query, key and
     value projections in one integer product a layer, fed whole to its attention node, and
     the vocabulary-wide logits written only when a step fetches them (greedy and beam
     steps read the candidates): the same values as 2d (every row's tokens identical at
     bart-base); a static batch of 32 in two lanes 0.827 s against 0.861 s.
  3. `per-token-split` (`training.int8_split`): recipe 1 with each second feed-forward layer
     (the GELU output, with its outliers) in 8 slices of its reduction axis, each with its
     own scale per token: 98.32 %, at about recipe 1's speed.
  4. `dynamic-encoder`: the encoder's query/key/value projections and first feed-forward
     layer in dynamic int8, one activation scale per call (so one request per encoder call
     on CPU), the rest as recipe 5: 98.16 %, at under half recipe 1's speed at bart-base.
  5. `blocks`: every MatMul with a constant weight as `MatMulNBits`, 8-bit weights in blocks
     of 16 along the reduction axis, int8 activations (`accuracy_level` 4); about 98.3 % in
     earlier builds (per-tensor dynamic quantisation about 96 %).
  Recipes 4 and 5 make the embedding tables int8 with one scale per tensor, dequantised
  after the lookup. The manifest records the recipe kept and why faster ones were refused.
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

from explain import artifacts
from explain.artifacts import (
    BLOCKS,
    DYNAMIC_ENCODER,
    INT8_RECIPES,
    PER_TOKEN,
    PER_TOKEN_SPLIT,
    PER_TOKEN_SPLIT_DECODER_V8,
    PER_TOKEN_SPLIT_V8,
    PER_TOKEN_V8,
    SVD_HEAD,
    SVD_HEAD_K8,
    SVD_HEAD_K8_INPLACE,
    SVD_HEAD_K8_LEAN,
)
from explain.explainer import DecodeSettings, Explainer
from explain.loading import load_onnx_explainer
from explain.types import ExplainJob, Explanation
from training.int8_head import RANK_SHARE, SVD_RESCORED
from training.int8_split import GROUPS
from training.int8_tokens import RESCORED
from training.modeling import PrismMeta
from training.shared_weights import share_token_embedding
from training.variant_graphs import BLOCK_SIZE, fp16_graph, int8_graph

logger = logging.getLogger(__name__)

MIN_IDENTICAL = 0.98  # share of answers that must be token-for-token fp32's
# int8 recipes, described; the gate tries them in `INT8_RECIPES` order.
METHODS = {
    PER_TOKEN: "every MatMul with a constant weight: int8 with one activation scale per token "
    "and 7-bit per-channel weight scales (integer GEMM); the LM head's best "
    f"{RESCORED} candidates per row rescored against the int8 token table with float "
    "activations; int8 embedding rows with one scale per row",
    PER_TOKEN_SPLIT: "as per-token, with each second feed-forward layer's reduction axis in "
    f"{GROUPS} slices, each with its own activation scale per token",
    PER_TOKEN_SPLIT_V8: "as per-token-split, with the cross-attention values handed from the "
    "encoder to the decoder in 8 bits (uint8 around 128, one scale per token and head) and the "
    "attention output computed on the integer GEMM (attention weights in uint8 per query row)",
    PER_TOKEN_SPLIT_DECODER_V8: "as per-token-split-v8, with the slices in the decoder's "
    "second feed-forward layers only (the encoder's in one integer product each)",
    SVD_HEAD: "as per-token-split-decoder-v8, with the LM head's pass over the vocabulary "
    f"low-rank (its width / {RANK_SHARE} leading singular directions, SVD-softmax) and its best "
    f"{SVD_RESCORED} candidates per row rescored against the int8 token table",
    SVD_HEAD_K8: "as svd-head, with the cross-attention keys handed from the encoder to the "
    "decoder in 8 bits too (uint8 around 128, one scale per token and head) and the "
    "attention scores computed on the integer GEMM (the query in uint8 per row and head)",
    SVD_HEAD_K8_INPLACE: "as svd-head-k8, with the decoder's self-attention one fused node "
    "(GroupQueryAttention) over a cache the graph writes in place, a row's own columns at its "
    "own position, and the cross keys taken transposed (one query row times the source "
    "columns on the integer GEMM)",
    SVD_HEAD_K8_LEAN: "as svd-head-k8-inplace, with the decoder's query, key and value "
    "projections in one integer product a layer, fed whole to its GroupQueryAttention, and the "
    "full logits written only when a step asks for them",
    PER_TOKEN_V8: "as per-token, with the cross-attention values in 8 bits as in "
    "per-token-split-v8 (no slices in the second feed-forward layers)",
    DYNAMIC_ENCODER: "encoder q/k/v projections and first feed-forward layer: dynamic int8 "
    "(7-bit per-channel weight scales, per-request activation scale); the rest: MatMulNBits "
    f"int8 (blocks of {BLOCK_SIZE}, int8 compute); int8 embedding tables",
    BLOCKS: f"MatMulNBits int8 weights (blocks of {BLOCK_SIZE}, int8 compute) "
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
    # The int8 recipes to try, in order (a benchmark on random weights, where no recipe can
    # pass, names the one it measures).
    int8_recipes: Sequence[str] = INT8_RECIPES


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
    """Silence, while they run, the quantisers' hints and lines per tensor and per node."""
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
    NOISE = ("pre-processing before quantization", "Quantization parameters for tensor")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


def build_variant(variant: str, onnx_dir: Path, recipe: str = BLOCKS) -> tuple[Path, Path]:
    """Write `variant`'s encoder and decoder next to the fp32 graphs in `onnx_dir` (`recipe`:
    which int8 recipe, one of `INT8_RECIPES`)."""
    if recipe not in INT8_RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}: one of {', '.join(INT8_RECIPES)}")
    paths = []
    with _quiet_quantisers():
        for fp32_name, name in zip(
            artifacts.variant_files(artifacts.FP32), artifacts.variant_files(variant), strict=True
        ):
            if variant == artifacts.INT8:
                int8_graph(onnx_dir / fp32_name, onnx_dir / name, recipe)
            else:
                fp16_graph(onnx_dir / fp32_name, onnx_dir / name)
            paths.append(onnx_dir / name)
    share_token_embedding(onnx_dir, variant)
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
    """Build each variant in `model_dir/onnx`, judge it, and return the manifest records.

    int8 tries `check.int8_recipes` in order and keeps the first that passes its gate (or the last
    tried when none does); the record names the recipe and why the earlier ones were refused.
    """
    settings = decode or DecodeSettings()
    start = time.perf_counter()
    expected = _explainer(model_dir, artifacts.FP32, settings).explain_all(check.jobs)
    records: dict[str, dict[str, Any]] = {}
    for variant in variants:
        recipes = list(check.int8_recipes) if variant == artifacts.INT8 else [BLOCKS]
        refused: list[str] = []
        for recipe in recipes:
            record = _judge(model_dir, variant, recipe, check, settings, expected)
            if record["servable"] or recipe == recipes[-1]:
                break
            refused.append(f"{recipe}: {record['reason']}")
        if variant == artifacts.INT8:
            record.update(recipe=recipe, refused=refused)
        records[variant] = record
    logger.info("variants gated in %.0f s", time.perf_counter() - start)
    return records


def _judge(
    model_dir: Path,
    variant: str,
    recipe: str,
    check: VariantCheck,
    settings: DecodeSettings,
    expected: Sequence[Explanation],
) -> dict[str, Any]:
    encoder, decoder = build_variant(variant, model_dir / artifacts.ONNX_DIR, recipe)
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
        "method": METHODS[recipe if variant == artifacts.INT8 else variant],
        "compared": agreed.compared,
        "sequences_identical": round(agreed.sequences_identical, 4),
        "tokens_identical": round(agreed.tokens_identical, 4),
        "bars_passed": None if bars is None else not failed,
        "failed_bars": failed,
        "servable": not reasons,
        "reason": "; ".join(reasons),
    }
    logger.info(
        "variant %s%s: %d requests, %.2f%% identical sequences, %.2f%% identical tokens, "
        "bars %s -> %s",
        variant,
        f" ({recipe})" if variant == artifacts.INT8 else "",
        agreed.compared,
        100 * agreed.sequences_identical,
        100 * agreed.tokens_identical,
        "not run" if bars is None else ("passed" if not failed else "failed"),
        "servable" if not reasons else f"not servable ({record['reason']})",
    )
    return record
