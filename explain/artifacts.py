"""What a model version directory holds, and the names and shapes of its ONNX graphs.

This is the one place training (which writes a version) and serving (which reads one) agree
on file names. A version directory:

    model/          config.json + model.safetensors (BART and the user table; training only)
    tokenizer/      tokenizer.json
    users/          ids.json + vectors.npy (the user table, `explain.users`)
    prism.json      what the model says about itself (input format, generation ids, ...)
    sentences.json  the sentence inventory (`explain.verifier`): the sentences it was trained on
    onnx/           encoder.onnx, decoder.onnx, export.json (fp32), and the precision
                    variants encoder.int8.onnx, decoder.int8.onnx, encoder.fp16.onnx,
                    decoder.fp16.onnx (`training.variants`; the manifest says which passed),
                    and each one's token embedding table, stored once for both graphs:
                    embed_tokens.npy, embed_tokens.int8.npy, embed_tokens.fp16.npy

encoder.onnx
    inputs   input_ids int64[b, s], attention_mask int64[b, s], user_embeds float32[b, d_model]
    outputs  cross_key_{i}, cross_value_{i} float32[b, heads, s, head_dim] for each decoder layer
             (int8 graphs of the `per-token-split-v8` recipe: cross_value_{i} uint8, with
             cross_value_scale_{i} float32[b, heads, s, 1], value = (uint8 - 128) x scale;
             of `svd-head-k8`: cross_key_{i} likewise, with cross_key_scale_{i})
decoder.onnx (one step, with KV cache)
    inputs   input_ids int64[b, 1], encoder_attention_mask int64[b, s], beam_idx int64[b],
             decoder_position int64[b] (the row's position: tokens it has before this one),
             decoder_attention_mask int64[b, t + 1] (1 where the row's cache is its own),
             past_key_{i}, past_value_{i} float32[b, heads, t, head_dim] (t may be 0),
             cross_key_{i}, cross_value_{i} (and their scales), as the encoder's
    outputs  logits float32[b, vocab],
             present_key_{i}, present_value_{i} float32[b, heads, t + 1, head_dim],
             top_scores float32[b, k], top_ids int64[b, k]: the k best logits and their
             tokens, best first (`training.graph_candidates`; greedy decoding reads these
             instead of the logits; exports before 2026-12-03 lack them)
decoder.int8.onnx of the `svd-head-k8-inplace` recipe (`training.int8_fused`)
    as decoder.onnx without beam_idx and decoder_attention_mask; past_key_{i}/present_key_{i}
    (and the values) are one buffer float32[b, heads, columns, head_dim] bound to both, the
    new key and value written at column decoder_position (`SELF_ATTENTION_CACHE`); and
    cross_key_{i} uint8[b, heads, head_dim, s] (`CROSS_KEY_LAYOUT`)

The encoder and decoder look up the same (tied) token embedding table. Each pair of graphs
names it `SHARED_EMBEDDING` and keeps its data in one `.npy` file as ONNX external data, so
the table is on disk once, and on CPU `explain.session` hands both sessions one memory-mapped
copy (`SessionOptions.add_initializer`) instead of letting each load its own.

The encoder returns the cross-attention keys and values directly, so they are projected once
per request rather than once per step. `beam_idx` reorders the self-attention cache inside the
graph, so beam search never copies the cache back to the host (it stays bound on the GPU).
The per-row position and self-attention mask let rows that joined at different steps share
one decode (iteration-level batching, `explain.continuous`); graphs exported before they
existed lack both inputs and are decoded in static batches only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODEL_DIR, TOKENIZER_DIR, USERS_DIR, META_FILE = "model", "tokenizer", "users", "prism.json"
ONNX_DIR = "onnx"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
SPEC_FILE = "export.json"
SPEC_FORMAT = "prism-onnx"
SPEC_VERSION = 1
ENCODER_PATH = f"{ONNX_DIR}/{ENCODER_FILE}"
DECODER_PATH = f"{ONNX_DIR}/{DECODER_FILE}"
SPEC_PATH = f"{ONNX_DIR}/{SPEC_FILE}"
ONNX_FILES = (ENCODER_FILE, DECODER_FILE, SPEC_FILE)
DECODER_INPUTS = (
    "input_ids",
    "encoder_attention_mask",
    "beam_idx",
    "decoder_position",
    "decoder_attention_mask",
)
# Inputs a decoder needs before rows can join a running decode (older exports lack them).
JOIN_INPUTS = ("decoder_position", "decoder_attention_mask")
LOGITS = "logits"
# The decoder's best next-token candidates per row (`training.graph_candidates`): greedy
# decoding picks among them when a row's bans leave one of them standing for sure.
TOP_SCORES, TOP_IDS = "top_scores", "top_ids"
# A decoder input (boolean scalar, `training.int8_lean`) that says whether a run fetches
# `logits`: false, the graph skips writing them ([0, 0]). `explain.session.OnnxSession` sets
# it from the outputs a call asks for; callers never feed it.
WANT_LOGITS = "want_logits"
CANDIDATES = 16
# Precision variants of the fp32 graphs. fp32 is the reference every variant is gated against.
FP32, INT8, FP16 = "fp32", "int8", "fp16"
VARIANTS = (FP32, INT8, FP16)
# How an int8 variant is made (`training.variants`), in the order the gate tries them and
# keeps the first that passes: the cross values in 8 bits first (the smallest serving
# process), the faster of those first, then the fastest at batch 1. Named here, where
# loading them needs no torch (the benchmarks' workers).
PER_TOKEN, PER_TOKEN_SPLIT = "per-token", "per-token-split"
PER_TOKEN_SPLIT_V8 = "per-token-split-v8"
PER_TOKEN_V8 = "per-token-v8"
PER_TOKEN_SPLIT_DECODER_V8 = "per-token-split-decoder-v8"
SVD_HEAD = "svd-head"
SVD_HEAD_K8 = "svd-head-k8"
SVD_HEAD_K8_INPLACE = "svd-head-k8-inplace"
SVD_HEAD_K8_LEAN = "svd-head-k8-lean"
DYNAMIC_ENCODER, BLOCKS = "dynamic-encoder", "blocks"
INT8_RECIPES = (
    SVD_HEAD_K8_LEAN,
    SVD_HEAD_K8_INPLACE,
    SVD_HEAD_K8,
    SVD_HEAD,
    PER_TOKEN_V8,
    PER_TOKEN_SPLIT_DECODER_V8,
    PER_TOKEN_SPLIT_V8,
    PER_TOKEN,
    PER_TOKEN_SPLIT,
    DYNAMIC_ENCODER,
    BLOCKS,
)
# Graph metadata an int8 variant carries: how its activations are scaled. `per-call` (the
# `dynamic-encoder` recipe's encoder: one scale per call, so a row's result depends on its
# batch-mates) or `per-row` (every other recipe: a row's result is its own). Loading encodes
# one request per call unless the graph says `per-row`.
ACTIVATION_SCALES = "prism.activation_scales"
PER_CALL, PER_ROW = "per-call", "per-row"
# Graph metadata of a decoder whose self-attention cache is written in place
# (`training.int8_fused`): each layer's `past_*` and `present_*` are one buffer [rows, heads,
# columns, head_dim] the runtime binds to both (`explain.kv_cache`); a row's cache is its own
# first `decoder_position` columns, and the graph has no `beam_idx` or
# `decoder_attention_mask`. Decoders without it append to a copied cache (`Concat`).
SELF_ATTENTION_CACHE = "prism.self_attention_cache"
IN_PLACE = "in-place"
# Graph metadata of a decoder that takes its uint8 cross keys transposed, [rows, heads,
# head_dim, src] (`training.int8_fused`): a step scores its one query row against them as a
# [1, head_dim] x [head_dim, src] product. The encoder still returns [rows, heads, src,
# head_dim]; the runtime stores them transposed as it copies them in (`OnnxSeq2Seq.encode`).
# Every other cross input, and other decoders' keys, are [rows, heads, src, head_dim or 1].
CROSS_KEY_LAYOUT = "prism.cross_key_layout"
KEYS_TRANSPOSED = "heads-dim-src"


def variant_files(variant: str) -> tuple[str, str]:
    """The encoder and decoder file names of a precision variant (inside `onnx/`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown precision variant {variant!r} (one of {', '.join(VARIANTS)})")
    if variant == FP32:
        return ENCODER_FILE, DECODER_FILE
    return f"encoder.{variant}.onnx", f"decoder.{variant}.onnx"


SHARED_EMBEDDING = "prism.shared.embed_tokens"


def shared_embedding_file(variant: str) -> str:
    """The `.npy` file (inside `onnx/`) holding a variant's shared token embedding table."""
    variant_files(variant)  # validates the name
    return "embed_tokens.npy" if variant == FP32 else f"embed_tokens.{variant}.npy"


def past_names(layer: int) -> tuple[str, str]:
    return f"past_key_{layer}", f"past_value_{layer}"


def present_names(layer: int) -> tuple[str, str]:
    return f"present_key_{layer}", f"present_value_{layer}"


def cross_names(layer: int) -> tuple[str, str]:
    return f"cross_key_{layer}", f"cross_value_{layer}"


def cross_value_scale_name(layer: int) -> str:
    """The per-token scales of an int8 graph's cross values ([batch, heads, src, 1]), where
    the encoder hands them over in 8 bits (`per-token-split-v8`)."""
    return f"cross_value_scale_{layer}"


def cross_key_scale_name(layer: int) -> str:
    """The per-token scales of an int8 graph's cross keys ([batch, heads, src, 1]), where the
    encoder hands them over in 8 bits (`svd-head-k8`)."""
    return f"cross_key_scale_{layer}"


def cross_scale_names(layers: int) -> set[str]:
    """The names of the cross keys' and values' scales ([rows, heads, src, 1]) of `layers`."""
    return {n for i in range(layers) for n in (cross_key_scale_name(i), cross_value_scale_name(i))}


def cross_inputs(layer: int) -> tuple[str, ...]:
    """Every name a decoder layer's cross keys and values may travel under, scales included."""
    return (*cross_names(layer), cross_key_scale_name(layer), cross_value_scale_name(layer))


@dataclass(frozen=True)
class OnnxSpec:
    decoder_layers: int
    num_heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    max_positions: int
    opset: int
    exporter: str
    format: str = SPEC_FORMAT
    version: int = SPEC_VERSION

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> OnnxSpec:
        raw: dict[str, Any] = json.loads((directory / SPEC_FILE).read_text())
        if raw.get("format") != SPEC_FORMAT or raw.get("version") != SPEC_VERSION:
            raise ValueError(f"{directory / SPEC_FILE}: not a {SPEC_FORMAT} v{SPEC_VERSION} export")
        return cls(**raw)
