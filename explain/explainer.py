"""The one `Explainer`: `prepare(job) -> generate(batch) -> finish(prepared, generation)`.

Every caller explains through this class, and so decodes the same way: the service (which
prepares each request on its own, outside the inference thread, generates batches on its
one worker thread and finishes each request on its own again), evaluation, the parity check,
the benchmarks and the bulk job. The stages split along what may fail and where:

- `prepare` is per request and touches only that request: input format, tokenization, the
  user row, the slots it can fill. An error here is that request's error.
- `generate` is the batch: one backend call per beam width. ONNX Runtime
  (`explain.onnx_backend.OnnxSeq2Seq`) serves; PyTorch (`training.torch_backend`) is the
  reference the parity check compares against. An error here fails that batch.
- `finish` is per request again: tokens to template, slots filled, the answer checks, and
  the evidence sentence when the model's text is unusable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from explain.decoding import DecodeRequest
from explain.errors import PrepareError
from explain.input_format import InputConfig, StudentInput, build_input
from explain.onnx_backend import EncodedBatch, Generated
from explain.rendering import render
from explain.tokenizer import PrismTokenizer
from explain.types import ExplainJob, Explanation, ModelInfo
from explain.users import UserTable


class GenerationBackend(Protocol):
    """Generates candidates for a padded batch: ONNX Runtime, or PyTorch for reference."""

    @property
    def max_new_tokens_limit(self) -> int: ...

    def generate(self, batch: EncodedBatch, request: DecodeRequest) -> Generated: ...


@dataclass(frozen=True)
class DecodeSettings:
    """How every caller decodes unless a request says otherwise."""

    max_new_tokens: int = 48  # tokens generated when a request sets none
    min_new_tokens: int = 4  # EOS is banned until this many tokens exist: never an empty answer
    num_beams: int = 1  # greedy


DEFAULT_DECODE = DecodeSettings()


@dataclass(frozen=True)
class Prepared:
    """One request, ready for a batch."""

    job: ExplainJob
    student: StudentInput
    user_vector: npt.NDArray[np.float32]
    user_known: bool
    max_new_tokens: int
    num_beams: int
    banned: tuple[int, ...]


@dataclass(frozen=True)
class Generation:
    """What the batch produced for one request: its candidates, best first."""

    candidates: list[list[int]]


@dataclass(frozen=True)
class BatchTimings:
    """Seconds spent on the whole batch, per stage (prepare is per request: not here)."""

    encode_s: float
    decode_s: float
    total_s: float


@dataclass(frozen=True)
class BatchGeneration:
    generations: list[Generation]
    timings: BatchTimings
    groups: list[int] = field(default_factory=list)  # rows per backend call


def pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class Explainer:
    """Not thread-safe in `generate` (one worker calls it); `prepare` and `finish` are."""

    def __init__(
        self,
        backend: GenerationBackend,
        tokenizer: PrismTokenizer,
        users: UserTable,
        input_config: InputConfig,
        info: ModelInfo,
        *,
        decode: DecodeSettings = DEFAULT_DECODE,
        ban_unfillable: bool = True,
    ) -> None:
        limit = backend.max_new_tokens_limit
        if decode.max_new_tokens > limit:
            raise ValueError(
                f"max_new_tokens {decode.max_new_tokens} exceeds what the model can generate "
                f"({limit}: its decoder has {limit + 1} positions)"
            )
        self.backend = backend
        self.tokenizer = tokenizer
        self.users = users
        self.input_config = input_config
        self.info = info
        self.decode = decode
        self.ban_unfillable = ban_unfillable
        self._special = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}

    @property
    def max_new_tokens_limit(self) -> int:
        return self.backend.max_new_tokens_limit

    # --- the three stages ---------------------------------------------------------------

    def prepare(self, job: ExplainJob) -> Prepared:
        max_new = job.max_new_tokens or self.decode.max_new_tokens
        if max_new > self.max_new_tokens_limit:
            raise PrepareError(
                f"max_new_tokens {max_new} exceeds the model's limit {self.max_new_tokens_limit}"
            )
        student = build_input(list(job.history), job.item, self.tokenizer, self.input_config)
        vectors, known = self.users.lookup([job.user_id])
        banned = (
            tuple(self.tokenizer.banned_slot_ids(student.slot_values))
            if self.ban_unfillable
            else ()
        )
        return Prepared(
            job=job,
            student=student,
            user_vector=vectors[0],
            user_known=known[0],
            max_new_tokens=max_new,
            num_beams=job.num_beams or self.decode.num_beams,
            banned=banned,
        )

    def generate(self, batch: Sequence[Prepared]) -> BatchGeneration:
        """One backend call per beam width in `batch`; candidates come back in order."""
        start = time.perf_counter()
        groups: dict[int, list[int]] = {}
        for index, prepared in enumerate(batch):
            groups.setdefault(prepared.num_beams, []).append(index)
        out: list[Generation | None] = [None] * len(batch)
        encode_s = decode_s = 0.0
        for num_beams, members in groups.items():
            ids, mask = pad_batch(
                [batch[i].student.input_ids for i in members], self.tokenizer.pad_id
            )
            vectors = np.stack([batch[i].user_vector for i in members]).astype(np.float32)
            request = DecodeRequest(
                max_new_tokens=[batch[i].max_new_tokens for i in members],
                banned=[batch[i].banned for i in members],
                min_new_tokens=self.decode.min_new_tokens,
                num_beams=num_beams,
                num_return=1,
            )
            generated = self.backend.generate(EncodedBatch(ids, mask, vectors), request)
            encode_s += generated.encode_s
            decode_s += generated.decode_s
            for index, candidates in zip(members, generated.decoded.candidates, strict=True):
                out[index] = Generation(candidates)
        timings = BatchTimings(encode_s, decode_s, time.perf_counter() - start)
        return BatchGeneration(
            [g for g in out if g is not None], timings, [len(m) for m in groups.values()]
        )

    def finish(self, prepared: Prepared, generation: Generation) -> Explanation:
        tokens = generation.candidates[0]
        template = self.tokenizer.decode(tokens)
        filled = render(template, prepared.student.slot_values)
        return Explanation(
            text=filled.text,
            user_known=prepared.user_known,
            input_tokens=len(prepared.student.input_ids),
            output_tokens=sum(1 for t in tokens if t not in self._special),
            history_used=prepared.student.history_used,
            token_ids=tuple(tokens),
            fallback_reason=filled.defect,
            template=template,
            model_text=filled.model_text,
            unfilled=filled.unfilled,
        )

    # --- conveniences for offline callers -----------------------------------------------

    def explain(self, jobs: Sequence[ExplainJob]) -> list[Explanation]:
        """Prepare, generate and finish `jobs` as one batch (raises on any failure)."""
        prepared = [self.prepare(job) for job in jobs]
        generated = self.generate(prepared)
        return [self.finish(p, g) for p, g in zip(prepared, generated.generations, strict=True)]

    def explain_all(
        self,
        jobs: Sequence[ExplainJob],
        *,
        batch_size: int = 64,
        progress: Callable[[int], object] | None = None,
    ) -> list[Explanation]:
        """Every job, in batches of similar input length (evaluation, parity, bulk work);
        `progress` is called with the size of each batch done."""
        prepared = [self.prepare(job) for job in jobs]
        order = sorted(range(len(jobs)), key=lambda i: len(prepared[i].student.input_ids))
        out: dict[int, Explanation] = {}
        for start in range(0, len(order), batch_size):
            members = order[start : start + batch_size]
            generated = self.generate([prepared[i] for i in members])
            for index, generation in zip(members, generated.generations, strict=True):
                out[index] = self.finish(prepared[index], generation)
            if progress is not None:
                progress(len(members))
        return [out[i] for i in range(len(jobs))]

    def warmup(self) -> None:
        """Run the graphs once per shape family so the first real request pays no setup cost."""
        from explain.items import Item

        history = (Item("Alien (1979)", None, {"genres": ["Horror", "Sci-Fi"]}),)
        item = Item("Aliens (1986)", None, {"genres": ["Action", "Sci-Fi"]})
        for beams in (1, 2):
            self.explain([ExplainJob("__warmup__", history, item, 8, beams)] * 2)
