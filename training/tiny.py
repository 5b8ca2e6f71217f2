"""A tiny, randomly initialised user-aware BART, built in seconds: for tests and parity checks.

The weights use `init_std=0.2` (at BART's default 0.02 a random model emits EOS at step 1,
which would make a parity check vacuous) plus a bias on EOS chosen so generated lengths vary,
so finished and unfinished rows are both exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import BartConfig, BartForConditionalGeneration

from explain.input_format import InputConfig, build_input, format_descriptor
from training.modeling import PrismMeta, UserAwareBart, generation_ids
from training.parity import probe_requests
from training.tokenization import train_bpe


class _WordCounter:
    def encode(self, text: str) -> list[int]:
        return [0] * (len(text.split()) + 2)


def tiny_config(
    vocab_size: int, *, d_model: int = 64, layers: int = 2, max_positions: int = 320
) -> BartConfig:
    return BartConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=max_positions,
        init_std=0.2,
        dropout=0.0,
        attention_dropout=0.0,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
    )


def bart_base_config(vocab_size: int = 50_330) -> BartConfig:
    """The paper's student shape (bart-base: d_model 768, 6+6 layers, 12 heads, ffn 3072, vocab
    50,265 plus the slot tokens), randomly initialised: for benchmarks, where speed and memory
    depend on the shape and not on the values."""
    config = tiny_config(vocab_size, d_model=768, layers=6, max_positions=1024)
    config.encoder_attention_heads = config.decoder_attention_heads = 12
    config.encoder_ffn_dim = config.decoder_ffn_dim = 3072
    return config


def build_tiny_model(
    out_dir: Path,
    *,
    num_users: int = 8,
    seed: int = 0,
    eos_bias: float = 3.75,
    max_input_tokens: int = 256,
    config: Callable[[int], BartConfig] = tiny_config,
) -> Path:
    """A random user-aware BART with a small trained tokenizer, saved as a model directory
    that publishing takes. `config` maps the tokenizer's vocabulary size to the BART shape
    (`lambda _: bart_base_config()` keeps bart-base's vocabulary)."""
    torch.manual_seed(seed)
    input_config = InputConfig(max_input_tokens=max_input_tokens)
    texts = [
        build_input(h, i, _WordCounter(), input_config).text
        for h, i in probe_requests(64, seed=seed)
    ]
    tokenizer = train_bpe(texts * 4, vocab_size=700)
    bart = BartForConditionalGeneration(config(tokenizer.vocab_size))
    with torch.no_grad():
        bart.final_logits_bias[0, tokenizer.eos_id] = eos_bias
    model = UserAwareBart(bart, num_users).eval()
    meta = PrismMeta(
        base_model="random-init tiny BART (tests)",
        input_format=format_descriptor(input_config),
        generation=generation_ids(tokenizer),
        d_model=int(bart.config.d_model or 0),
        num_users=num_users,
    )
    rows = {f"user-{k}": k for k in range(1, num_users + 1)}
    model.save(out_dir, user_rows=rows, tokenizer=tokenizer, meta=meta)
    return out_dir
