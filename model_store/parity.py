"""Parity: ONNX Runtime greedy tokens must equal PyTorch `generate(inputs_embeds=...)` tokens.

Checked on at least 20 requests, half for known users and half for the zero vector, with
and without the slot ban. A model whose outputs are trivially short (EOS right after BOS)
proves nothing, so the report carries the generated lengths, and parity only passes when
at most a tenth of the rows stopped at the first real step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import onnx_spec as spec
from model_store.items import Item
from model_store.modeling import UserAwareBart, banned_slot_matrix, plain_generation_config
from model_store.prompt import InputConfig, build_input
from model_store.tokenizer import PrismTokenizer

# A fixed probe catalogue: parity is about numerics, so any realistic request will do.
_PROBE_ITEMS = [
    ("Alien (1979)", ["Horror", "Sci-Fi"]),
    ("Annie Hall (1977)", ["Comedy", "Romance"]),
    ("Back to the Future (1985)", ["Adventure", "Comedy", "Sci-Fi"]),
    ("Casablanca (1942)", ["Drama", "Romance", "War"]),
    ("Die Hard (1988)", ["Action", "Thriller"]),
    ("E.T. the Extra-Terrestrial (1982)", ["Children's", "Drama", "Fantasy", "Sci-Fi"]),
    ("Fargo (1996)", ["Crime", "Drama", "Thriller"]),
    ("Heat (1995)", ["Action", "Crime", "Thriller"]),
    ("Jaws (1975)", ["Action", "Horror"]),
    ("Psycho (1960)", ["Horror", "Thriller"]),
    ("Star Wars (1977)", ["Action", "Adventure", "Sci-Fi"]),
    ("The Godfather (1972)", ["Action", "Crime", "Drama"]),
    ("The Thing (1982)", ["Action", "Horror", "Sci-Fi"]),
    ("Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    ("Vertigo (1958)", ["Mystery", "Thriller"]),
]


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    informative: bool
    num_inputs: int
    num_known: int
    num_unknown: int
    mismatches: int
    min_generated: int
    eos_first_share: float  # rows that ended right after BOS
    mean_generated: float
    max_new_tokens: int
    first_mismatch: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_requests(count: int, seed: int = 0) -> list[tuple[list[Item], Item]]:
    rng = random.Random(seed)
    items = [Item(t, str(k), {"genres": g}) for k, (t, g) in enumerate(_PROBE_ITEMS)]
    out = []
    for _ in range(count):
        chosen = rng.sample(items, rng.randint(2, 7))
        out.append((chosen[:-1], chosen[-1]))
    return out


def check_parity(
    model: UserAwareBart,
    tokenizer: PrismTokenizer,
    onnx_dir: Path,
    generation: dict[str, Any],
    input_config: InputConfig,
    *,
    user_rows: Sequence[int],
    num_inputs: int = 24,
    max_new_tokens: int = 32,
    max_eos_first_share: float = 0.1,
) -> ParityReport:
    """Compare greedy tokens, batch by batch, between PyTorch and ONNX Runtime on CPU."""
    from service.runtime.explainer import pad_batch
    from service.runtime.generator import GenerationIds, Seq2SeqGenerator
    from service.runtime.session import OnnxSession

    model = model.eval().to("cpu")
    onnx = spec.OnnxSpec.load(onnx_dir)
    encoder = OnnxSession(onnx_dir / spec.ENCODER_FILE, provider="cpu")
    decoder = OnnxSession(onnx_dir / spec.DECODER_FILE, provider="cpu")
    generator = Seq2SeqGenerator(encoder, decoder, onnx, GenerationIds.from_manifest(generation))
    config = plain_generation_config(generation)

    requests = probe_requests(num_inputs)
    known = [
        user_rows[i % len(user_rows)] if user_rows and i % 2 == 0 else 0 for i in range(num_inputs)
    ]
    mismatches, lengths, first = 0, [], None
    for start in range(0, num_inputs, 6):
        chunk = range(start, min(start + 6, num_inputs))
        built = [build_input(*requests[i], tokenizer, input_config) for i in chunk]
        ids, mask = pad_batch([b.input_ids for b in built], tokenizer.pad_id)
        rows = torch.tensor([known[i] for i in chunk])
        users = model.user_vectors(rows).detach().numpy().astype(np.float32)
        for use_ban in (False, True):
            banned_ids = (
                [tokenizer.banned_slot_ids(b.slot_values) for b in built] if use_ban else None
            )
            banned = (
                banned_slot_matrix(tokenizer, [b.slot_values for b in built], onnx.vocab_size)
                if use_ban
                else None
            )
            ref = model.generate(
                torch.from_numpy(ids),
                torch.from_numpy(mask),
                rows,
                generation_config=config,
                banned_tokens=banned,
                max_new_tokens=max_new_tokens,
            )
            got = generator.generate(
                ids, mask, users, max_new_tokens=[max_new_tokens] * len(built), banned=banned_ids
            )
            for row, tokens in enumerate(got.tokens):
                expected = [int(t) for t in ref[row, 1:] if int(t) != tokenizer.pad_id]
                lengths.append(len(tokens))
                if expected != tokens:
                    mismatches += 1
                    first = (
                        first or f"row {start + row}: torch {expected[:12]} vs ort {tokens[:12]}"
                    )
    total = len(lengths)
    eos_first = sum(1 for n in lengths if n <= 2) / total
    return ParityReport(
        passed=mismatches == 0 and eos_first <= max_eos_first_share,
        informative=eos_first <= max_eos_first_share,
        num_inputs=total,
        num_known=sum(1 for r in known if r) * 2,
        num_unknown=sum(1 for r in known if not r) * 2,
        mismatches=mismatches,
        min_generated=min(lengths),
        eos_first_share=eos_first,
        mean_generated=float(np.mean(lengths)),
        max_new_tokens=max_new_tokens,
        first_mismatch=first,
    )
