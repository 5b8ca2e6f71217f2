"""How a precision variant's graphs are made from the fp32 ones (`training.variants` says
which recipes exist, in what order they are tried, and how the gate judges them)."""

from __future__ import annotations

from pathlib import Path

import onnx

from explain import artifacts
from explain.artifacts import (
    DYNAMIC_ENCODER,
    LOGITS,
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
from training.graph_candidates import CANDIDATES_TOPK, add_candidates, remove_candidates
from training.grouped_topk import group_topk, logits_width
from training.int8_blocked import activation_shapes, block_token_quantisers
from training.int8_fused import in_place_self_attention, transpose_decoder_keys
from training.int8_head import SVD_RESCORED, factor_head
from training.int8_keys import quantise_decoder_keys
from training.int8_lean import lean_decoder
from training.int8_split import quantise_split, second_feed_forward
from training.int8_tokens import (
    HEAD_TOPK,
    RESCORED,
    constant_weight_matmuls,
    matmuls_feeding,
    quantise_per_token,
    quantise_tables,
    rescore_head,
    stamp,
)
from training.int8_values import (
    quantise_decoder_values,
    quantise_encoder_keys,
    quantise_encoder_values,
)

BLOCK_SIZE = 16  # MatMulNBits' block along the reduction axis


def _cross_projections(model: onnx.ModelProto) -> set[str]:
    """The MatMuls whose results reach a graph output without passing another constant-weight
    MatMul: in the encoder graph, the decoder layers' cross key/value projections."""
    return matmuls_feeding(model, *(o.name for o in model.graph.output))


def _dynamic_layers(model: onnx.ModelProto) -> list[str]:
    """The encoder's own constant-weight MatMuls that read a LayerNormalization output (the
    query/key/value projections and the first feed-forward layer). A normalised input is
    what one activation scale per call covers well; the attention output projection (which
    reads the attention context) and the second feed-forward layer (the GELU output, with its
    outliers) stay in blocks with the cross key/value projections."""
    producer = {out: node.op_type for node in model.graph.node for out in node.output}
    cross = _cross_projections(model)
    weighted = [model.graph.node[i] for i in constant_weight_matmuls(model)]
    return [
        n.name
        for n in weighted
        if n.name not in cross and producer.get(n.input[0]) == "LayerNormalization"
    ]


PER_TOKEN_RECIPES = (
    PER_TOKEN,
    PER_TOKEN_SPLIT,
    PER_TOKEN_SPLIT_V8,
    PER_TOKEN_SPLIT_DECODER_V8,
    PER_TOKEN_V8,
    SVD_HEAD,
    SVD_HEAD_K8,
    SVD_HEAD_K8_INPLACE,
    SVD_HEAD_K8_LEAN,
)
# The recipes with the low-rank head preview; of those, the ones with 8-bit cross keys and
# the ones whose decoder writes its cache in place.
SVD_HEADS = (SVD_HEAD, SVD_HEAD_K8, SVD_HEAD_K8_INPLACE, SVD_HEAD_K8_LEAN)
KEYS_8 = (SVD_HEAD_K8, SVD_HEAD_K8_INPLACE, SVD_HEAD_K8_LEAN)
IN_PLACE = (SVD_HEAD_K8_INPLACE, SVD_HEAD_K8_LEAN)


def splits_feed_forward(recipe: str, graph_file: str) -> bool:
    """Whether `recipe` quantises the second feed-forward layers of `graph_file` in slices
    (`training.int8_split`). `per-token-split-decoder-v8` slices the decoder's only: on the
    default model (2026-12-05, 1,960 gate answers) the encoder's slices changed no agreement
    (98.37 % without them, 98.32 % with), and at bart-base they were a quarter of an encoder
    call (8 products and a `Sum` a layer in place of one product)."""
    if recipe in (PER_TOKEN_SPLIT, PER_TOKEN_SPLIT_V8):
        return True
    return (
        recipe in (PER_TOKEN_SPLIT_DECODER_V8, *SVD_HEADS) and graph_file == artifacts.DECODER_FILE
    )


def int8_graph(source: Path, target: Path, recipe: str) -> None:
    """Write `source`'s int8 form to `target`, made by int8 `recipe`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    model = onnx.load(str(source))
    candidates = remove_candidates(model)  # added back after the LM head is rewritten
    config = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK_SIZE,
        is_symmetric=True,
        accuracy_level=4,
        bits=8,
        op_types_to_quantize=("MatMul",),
    )
    if recipe in PER_TOKEN_RECIPES:
        shapes = activation_shapes(model)
        if splits_feed_forward(recipe, source.name):
            quantise_split(model, second_feed_forward(model))
        if recipe in (PER_TOKEN_SPLIT_V8, PER_TOKEN_SPLIT_DECODER_V8, PER_TOKEN_V8, *SVD_HEADS):
            quantise_encoder_values(model)
            quantise_decoder_values(model)
        if recipe in KEYS_8:  # the cross keys (`training.int8_keys`)
            quantise_encoder_keys(model)
            quantise_decoder_keys(model)
        # The LM head picks the argmax: its best candidates are rescored against the tied
        # table; an untied head keeps `blocks`' finer per-block scales instead.
        # `svd-head` also makes their preview low-rank (`training.int8_head`).
        head = matmuls_feeding(model, "logits")
        rescored = SVD_RESCORED if recipe in SVD_HEADS else RESCORED
        if len(head) == 1 and rescore_head(model, next(iter(head)), "logits", rescored):
            if recipe in SVD_HEADS:
                factor_head(model, next(iter(head)))
            head = set()
        quantise_per_token(model, exclude=head)
        quantise_tables(model)
        if head:
            quantiser = MatMulNBitsQuantizer(model, algo_config=config)
            quantiser.process()
            model = quantiser.model.model
        model = block_token_quantisers(model, shapes)
        if recipe in IN_PLACE and source.name == artifacts.DECODER_FILE:
            in_place_self_attention(model)  # `training.int8_fused`
            transpose_decoder_keys(model)
        stamp(model, artifacts.ACTIVATION_SCALES, artifacts.PER_ROW)
        if candidates:
            add_candidates(model, candidates)
        _group_vocabulary_topk(model)
        if recipe == SVD_HEAD_K8_LEAN and source.name == artifacts.DECODER_FILE:
            lean_decoder(model)  # `training.int8_lean`; last: it adds an `If`
        onnx.save(model, str(target))
        return
    dynamic: list[str] = []
    if recipe == DYNAMIC_ENCODER and source.name == artifacts.ENCODER_FILE:
        dynamic = _dynamic_layers(model)
    quantiser = MatMulNBitsQuantizer(model, algo_config=config, nodes_to_exclude=dynamic)
    quantiser.process()
    staged = [target.with_suffix(".blocks.onnx"), target.with_suffix(".dynamic.onnx")]
    quantiser.model.save_model_to_file(str(staged[0]), False)
    try:
        gather_from = staged[0]
        if dynamic:
            # One activation scale per call (so one request per call, see the stamp below);
            # 7-bit weights (`reduce_range`): on AVX2 without VNNI the u8 x s8 kernel sums
            # pairs in 16 bits, which full-range weights can saturate (97.44 % vs 96.37 %).
            quantize_dynamic(
                str(staged[0]),
                str(staged[1]),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=dynamic,
            )
            gather_from = staged[1]
        # MatMulNBits only quantises Gather to 4 bits; 8-bit tables go through the
        # QOperator Gather path (int8 data, DequantizeLinear after the lookup).
        quantize_dynamic(
            str(gather_from),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Gather"],
        )
        stamped = onnx.load(str(target))
        scales = artifacts.PER_CALL if dynamic else artifacts.PER_ROW
        stamp(stamped, artifacts.ACTIVATION_SCALES, scales)
        if candidates:
            add_candidates(stamped, candidates)
        onnx.save(stamped, str(target))
    finally:
        for path in staged:
            path.unlink(missing_ok=True)


def _group_vocabulary_topk(model: onnx.ModelProto) -> None:
    """The `TopK` that reads the whole vocabulary a step (a rescored head's own, else the
    candidates') in two stages (`training.grouped_topk`: the same result, faster on CPU)."""
    width = logits_width(model, LOGITS)
    if width is None:
        return
    names = {n.name for n in model.graph.node}
    group_topk(model, HEAD_TOPK if HEAD_TOPK in names else CANDIDATES_TOPK, width)


def fp16_graph(source: Path, target: Path) -> None:
    """Write `source` in half precision to `target` (weights, activations, KV cache)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    candidates = remove_candidates(model)  # their scores stay float32, cast from the logits
    model = convert_float_to_float16(model, keep_io_types=False)
    if candidates:
        add_candidates(model, candidates)
    onnx.save(model, str(target))
