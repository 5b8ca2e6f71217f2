"""The model and inputs of the peer benchmark (`benchmarks.peers`), built once in the parent
process: the bart-base-shaped model published to the store and copied for HF and
CTranslate2, the token ids and the catalogue requests every engine runs on."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "prism-bart-base"
FORCED_BOS, DECODER_START, EOS, PAD = 0, 2, 2, 1


def build(work: Path, args: argparse.Namespace, recipe: str = "per-token") -> dict[str, Any]:
    """Publish the bart-base-shaped model to `work/store` with the int8 `recipe` (default: the
    first a trained model tries); write the HF and CTranslate2 copies."""
    import ctranslate2
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from explain.explainer import DecodeSettings
    from model_store.store import ModelStore
    from training.modeling import UserAwareBart
    from training.parity import probe_jobs
    from training.publishing import publish_model
    from training.tiny import bart_base_config, build_tiny_model, tiny_config
    from training.variants import VariantCheck

    torch.set_num_threads(args.threads)
    shape = (lambda _: bart_base_config()) if args.shape == "bart-base" else tiny_config
    model_dir = build_tiny_model(work / "model", num_users=8, eos_bias=0.0, config=shape)
    started = time.perf_counter()
    jobs = probe_jobs([f"user-{k}" for k in range(1, 9)], 16, 16)
    # Parity and the variants' agreement under the settings the benchmark serves with: random
    # weights repeat one token, and a beam's n-best over near-equal scores is not comparable.
    decode = DecodeSettings(max_new_tokens=args.new_tokens, candidates=1)
    version, report = publish_model(
        ModelStore(work / "store"),
        NAME,
        model_dir,
        eval_metrics={},
        # No recipe passes a gate on random weights: build the one asked for.
        variant_check=VariantCheck(jobs, int8_recipes=(recipe,)),
        decode=decode,
        # Speed depends on the shape, not the values: a parity miss on random weights (on the
        # Intel AVX-512 host 2 of 48 rows whose first token differed, each row one token
        # repeated: near-equal logits) is reported with the results, not a reason to stop.
        variants_despite_parity=True,
    )
    publish_s = time.perf_counter() - started
    bart = UserAwareBart.load(model_dir).bart.eval()
    # CTranslate2's BART loader reads mBART-era attributes that transformers 5 dropped from
    # BartConfig; BART is post-norm without a final layer norm.
    bart.config.normalize_before = False
    bart.config.add_final_layer_norm = False
    hf_dir = work / "hf"
    bart.save_pretrained(hf_dir)
    vocab_size = int(bart.config.vocab_size)
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    vocab = {**specials, **{f"t{i}": i for i in range(4, vocab_size)}}
    PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    ).save_pretrained(hf_dir)
    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(work / "ct2"), force=True)
    return {
        "version": version.version,
        "parity": report.passed,
        "parity_mismatches": f"{report.mismatches} of {report.num_inputs} rows",
        "parity_ties": report.ties,
        "publish_s": round(publish_s, 1),
        "variants": {k: v.model_dump() for k, v in version.manifest.variants.items()},
        "vocab_size": vocab_size,
        "recipe": recipe,
    }


def make_inputs(work: Path, args: argparse.Namespace, vocab: int) -> None:
    rng = np.random.default_rng(args.seed)
    count = args.b1_requests + 32
    ids = rng.integers(4, vocab, size=(count, args.src_tokens), dtype=np.int64)
    ids[:, 0], ids[:, -1] = FORCED_BOS, EOS
    np.save(work / "ids.npy", ids)
    # Catalogue requests for the whole-path engines: histories long enough for ~120 tokens.
    from benchmarks.catalogue import catalogue_items, request_body

    items = catalogue_items()
    picker = random.Random(args.seed)
    requests = [
        request_body(picker.sample(items, 13), "bench-unknown", max_new_tokens=args.new_tokens)
        for _ in range(count)
    ]
    (work / "requests.json").write_text(json.dumps(requests))
