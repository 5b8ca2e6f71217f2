"""Parity: ONNX Runtime tokens must equal PyTorch `generate(inputs_embeds=...)` tokens.

Both run through the same `Explainer` stages on the same prepared requests (so the input
format, the user vectors and the slot bans are identical by construction), with the
service's decode settings. Checked on at least 20 requests, half for known users and half
for the zero vector, with and without the slot ban. A model whose outputs are trivially
short (EOS right after BOS) proves nothing, so the report carries the generated lengths,
and parity only passes when at most a tenth of the rows stopped at the first real step.

A greedy row whose tokens differ is a **tie**, not a mismatch, when at the first differing
step each engine's logits for the two tokens (PyTorch's choice and ONNX Runtime's) are
within `TIE_TOLERANCE` of each other relative to their size, in PyTorch and in ONNX Runtime
alike (both fed the common prefix): two float engines summing in different orders may
break a near-tie either way. The random bart-base model of the benchmark did on an Intel
AVX-512/AMX host (2026-12-05): 2 of 48 rows, each one token repeated, parted at the first
token, where PyTorch scored the two candidates 23.1437 and 23.1370 and ONNX Runtime 23.1428
and 23.1625 (the engines' logits of that step differed by up to 0.075 over the vocabulary,
3e-3 of the largest); every row of the trained default model (2026-12-05.1) agreed. After
a tie the rows go different ways, which is not an error of either; at most `MAX_TIE_SHARE`
of the rows may tie, and the report counts them apart. Beam rows get no such allowance:
their mismatches count.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from explain.explainer import DecodeSettings, Explainer, Prepared
from explain.items import Item
from explain.types import ExplainJob
from explain.users import UNKNOWN_ROW

if TYPE_CHECKING:
    from explain.onnx_backend import EncodedBatch, OnnxSeq2Seq

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
UNKNOWN_USER = "~parity-unknown"
# Two logits closer than this share of the larger's size (at least 1) are a tie two fp32
# engines may break either way.
TIE_TOLERANCE = 1e-3
MAX_TIE_SHARE = 0.1


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
    num_beam_inputs: int = 0  # rows also compared under the second pass (beam n-best)
    ties: int = 0  # greedy rows that parted at a near-exact tie of PyTorch's logits
    first_tie: str | None = None

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


def probe_jobs(known_users: Sequence[str], count: int, max_new_tokens: int) -> list[ExplainJob]:
    """`count` probe requests, every other one for a known user, the rest for nobody."""
    jobs = []
    for k, (history, item) in enumerate(probe_requests(count)):
        user = known_users[k % len(known_users)] if known_users and k % 2 == 0 else UNKNOWN_USER
        jobs.append(ExplainJob(user, tuple(history), item, max_new_tokens))
    return jobs


def check_parity(
    reference: Explainer,
    candidate: Explainer,
    *,
    known_users: Sequence[str],
    num_inputs: int = 24,
    max_new_tokens: int = 32,
    max_eos_first_share: float = 0.1,
    batch_size: int = 6,
) -> ParityReport:
    """Compare the tokens of `candidate` (ONNX) with `reference` (PyTorch), batch by batch.

    Both explainers must share the decode settings; their input config and user table come
    from the same version directory, so preparing with the reference serves both."""
    if reference.decode != candidate.decode:
        raise ValueError(f"decode settings differ: {reference.decode} vs {candidate.decode}")
    jobs = probe_jobs(known_users, num_inputs, max_new_tokens)
    prepared = [reference.prepare(job) for job in jobs]
    unbanned = [replace(p, banned=()) for p in prepared]
    # The second pass (beam search, n-best) is served too: its candidates must agree as well
    # (unless the settings turn it off).
    wider = (
        [reference.widen(p) for p in prepared[: max(1, len(prepared) // 2)]]
        if reference.decode.candidates > 1
        else []
    )
    mismatches, ties, lengths, first, first_tie = 0, 0, [], None, None
    for variant in (unbanned, prepared, wider):
        for start in range(0, len(variant), batch_size):
            chunk: Sequence[Prepared] = variant[start : start + batch_size]
            expected = reference.generate(chunk).generations
            got = candidate.generate(chunk).generations
            for offset, (want, have) in enumerate(zip(expected, got, strict=True)):
                tokens = have.candidates[0]
                if variant is not wider:
                    lengths.append(len(tokens))
                if want.candidates == have.candidates:
                    continue
                where = f"row {start + offset} (beams {chunk[offset].num_beams})"
                gap = _tie_gap(reference, candidate, chunk[offset], want.candidates[0], tokens)
                if gap is not None and gap <= TIE_TOLERANCE:
                    ties += 1
                    first_tie = first_tie or (
                        f"{where}: torch {want.candidates[0][:12]} vs ort {tokens[:12]}, "
                        f"relative logit gap {gap:.2e} at the first difference"
                    )
                    continue
                mismatches += 1
                first = first or (
                    f"{where}: torch {want.candidates[0][:12]} vs ort {tokens[:12]}"
                    + (f", relative logit gap {gap:.2e}" if gap is not None else "")
                )
    total = len(lengths)
    known = sum(1 for p in prepared if p.user_known)
    eos_first = sum(1 for n in lengths if n <= 2) / total
    return ParityReport(
        passed=mismatches == 0
        and ties <= MAX_TIE_SHARE * total
        and eos_first <= max_eos_first_share,
        informative=eos_first <= max_eos_first_share,
        num_inputs=total,
        num_known=known * 2,
        num_unknown=(len(prepared) - known) * 2,
        mismatches=mismatches,
        min_generated=min(lengths),
        eos_first_share=eos_first,
        mean_generated=float(np.mean(lengths)),
        max_new_tokens=max_new_tokens,
        first_mismatch=first,
        num_beam_inputs=len(wider),
        ties=ties,
        first_tie=first_tie,
    )


def _tie_gap(
    reference: Explainer,
    candidate: Explainer,
    prepared: Prepared,
    want: Sequence[int],
    have: Sequence[int],
) -> float | None:
    """For a greedy row: the larger of the two engines' gaps between the logits of the two
    tokens, relative to their size (at least 1), at the first step where `want` (PyTorch's)
    and `have` (ONNX Runtime's) differ.
    None for a beam row, where one sequence is a prefix of the other, or for backends other
    than PyTorch against ONNX Runtime."""
    from explain.explainer import pad_batch
    from explain.onnx_backend import EncodedBatch, OnnxSeq2Seq
    from training.torch_backend import TorchSeq2Seq

    torch_side, onnx_side = reference.backend, candidate.backend
    if prepared.num_beams > 1 or not isinstance(torch_side, TorchSeq2Seq):
        return None
    if not isinstance(onnx_side, OnnxSeq2Seq):
        return None
    step = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), None)
    if step is None:
        return None
    ids, mask = pad_batch([prepared.student.input_ids], reference.tokenizer.pad_id)
    batch = EncodedBatch(ids, mask, prepared.user_vector[None, :].astype(np.float32))
    gaps = []
    for logits in (
        torch_side.next_logits(batch, want[:step]),
        _onnx_next_logits(onnx_side, batch, want[:step]),
    ):
        a, b = float(logits[want[step]]), float(logits[have[step]])
        gaps.append(abs(a - b) / max(1.0, abs(a), abs(b)))
    return max(gaps)


def export_with_parity(
    model_dir: Path, onnx_dir: Path, *, num_inputs: int = 24, decode: DecodeSettings | None = None
) -> ParityReport:
    """Export `model_dir`'s model into `onnx_dir` and check ORT against PyTorch."""
    from explain.loading import load_onnx_explainer
    from training.export import export_onnx
    from training.modeling import PrismMeta, UserAwareBart
    from training.torch_backend import torch_explainer

    settings = decode or DecodeSettings()
    meta = PrismMeta.load(model_dir)
    model = UserAwareBart.load(model_dir)
    export_onnx(model, onnx_dir)
    reference = torch_explainer(model_dir, model=model, decode=settings)
    known = [u for u in reference.users.ids() if reference.users.row(u) != UNKNOWN_ROW][:12]
    candidate = load_onnx_explainer(
        model_dir,
        name=model_dir.name,
        version="unpublished",
        input_config=reference.input_config,
        generation=meta.generation,
        provider="cpu",
        decode=settings,
        onnx_dir=onnx_dir,
    )
    return check_parity(reference, candidate, known_users=known, num_inputs=num_inputs)


def _onnx_next_logits(
    backend: OnnxSeq2Seq, batch: EncodedBatch, prefix: Sequence[int]
) -> npt.NDArray[np.float32]:
    """ONNX Runtime's logits [vocab] of a one-row batch's next token after the generated
    `prefix` (the tokens after the decoder start), fed one step at a time."""
    from explain.steps import CachedSteps

    steps = CachedSteps(
        backend.decoder,
        batch.attention_mask,
        backend.encode(batch),
        backend.spec.decoder_layers,
        backend.spec.vocab_size,
    )
    beam_idx = np.zeros(1, dtype=np.int64)
    for token in (backend.ids.decoder_start_token_id, *prefix):
        logits = steps.step(np.array([token], dtype=np.int64), beam_idx)
    last: npt.NDArray[np.float32] = logits[0]
    return last
