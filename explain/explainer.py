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
- `finish` is per request again: each candidate's tokens to a slot template, filled, and
  checked by the verifier (`explain.verifier`: well-formed, sentences the teacher wrote,
  every claim supported); the first that passes is served, with the evidence it relies on.

Candidates are cheap where they are not needed: greedy decoding gives one; only when it
fails the checks does `finish` ask for a second pass (`Explanation.retry`), which `widen`
turns into a beam search returning its `candidates` best; when none of those passes either,
the evidence sentence is served, flagged and counted by the first candidate's defect.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from explain.claims import ClaimUse
from explain.decoding import DecodeRequest
from explain.errors import PrepareError
from explain.input_format import InputConfig, StudentInput, build_input
from explain.onnx_backend import EncodedBatch, Generated
from explain.rendering import fill_slots
from explain.tokenizer import PrismTokenizer
from explain.types import ExplainJob, Explanation, ModelInfo
from explain.users import UserTable
from explain.verifier import Verifier, claim_evidence, evidence_sentence


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
    candidates: int = 8  # beam width (and candidates kept) of the second pass, when one runs


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
    num_return: int = 1  # candidates the batch keeps for this request
    final: bool = False  # the second pass: no further one is asked for


@dataclass(frozen=True)
class Generation:
    """What the batch produced for one request: its candidates, best first."""

    candidates: list[list[int]]


@dataclass(frozen=True)
class BatchTimings:
    """Seconds spent on the whole batch, per stage (prepare is per request: not here), and
    how many greedy steps ran again for their logits (their candidates could not settle a
    row: `explain.decoding.choose`), each about one step's time."""

    encode_s: float
    decode_s: float
    total_s: float
    reruns: int = 0


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
        verifier: Verifier | None = None,
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
        self.verifier = verifier or Verifier(None)
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
        groups: dict[tuple[int, int], list[int]] = {}
        for index, prepared in enumerate(batch):
            groups.setdefault((prepared.num_beams, prepared.num_return), []).append(index)
        out: list[Generation | None] = [None] * len(batch)
        encode_s = decode_s = 0.0
        reruns = 0
        for (num_beams, num_return), members in groups.items():
            ids, mask = pad_batch(
                [batch[i].student.input_ids for i in members], self.tokenizer.pad_id
            )
            vectors = np.stack([batch[i].user_vector for i in members]).astype(np.float32)
            request = DecodeRequest(
                max_new_tokens=[batch[i].max_new_tokens for i in members],
                banned=[batch[i].banned for i in members],
                min_new_tokens=self.decode.min_new_tokens,
                num_beams=num_beams,
                num_return=num_return,
            )
            generated = self.backend.generate(EncodedBatch(ids, mask, vectors), request)
            encode_s += generated.encode_s
            decode_s += generated.decode_s
            reruns += generated.reruns
            for index, candidates in zip(members, generated.decoded.candidates, strict=True):
                out[index] = Generation(candidates)
        timings = BatchTimings(encode_s, decode_s, time.perf_counter() - start, reruns)
        return BatchGeneration(
            [g for g in out if g is not None], timings, [len(m) for m in groups.values()]
        )

    def finish(
        self, prepared: Prepared, generation: Generation, *, last: bool = False
    ) -> Explanation:
        """The first candidate that passes the verifier, or else: a request for the second
        pass (`Explanation.retry`) when one may run, or the evidence sentence. `last` says no
        second pass can run (the caller is out of time): serve what there is."""
        student = prepared.student
        values, evidence = student.slot_values, student.evidence
        first: tuple[str, str, str | None, tuple[str, ...], list[int]] | None = None
        for tried, tokens in enumerate(generation.candidates, start=1):
            template = self.tokenizer.decode(tokens)
            verdict, text = self.verifier.check(template, values, evidence, student.similar)
            if first is None:
                unfilled = tuple(fill_slots(template, values).unfilled)
                first = (template, text, verdict.problem, unfilled, tokens)
            if verdict.ok:
                return self._explanation(
                    prepared, text, template, tokens, text, None, unfilled, tried, verdict.claims
                )
        assert first is not None, "a generation has at least one candidate"
        template, model_text, problem, unfilled, tokens = first
        if not (prepared.final or last) and self.decode.candidates > 1:
            return self._explanation(
                prepared, model_text, template, tokens, model_text, problem, unfilled,
                len(generation.candidates), (), retry=True,
            )  # fmt: skip
        fallback = evidence_sentence(values, evidence, student.similar)
        served = fill_slots(fallback, values).text
        verdict, _ = self.verifier.check(fallback, values, evidence, student.similar)
        return self._explanation(
            prepared, served, template, tokens, model_text, problem, unfilled,
            len(generation.candidates), verdict.claims, served_template=fallback,
        )  # fmt: skip

    def widen(self, prepared: Prepared) -> Prepared:
        """The second pass for a request whose greedy answer failed the checks."""
        width = self.decode.candidates
        return replace(prepared, num_beams=width, num_return=width, final=True)

    def _explanation(
        self,
        prepared: Prepared,
        text: str,
        template: str,
        tokens: list[int],
        model_text: str,
        problem: str | None,
        unfilled: tuple[str, ...],
        tried: int,
        claims: tuple[ClaimUse, ...],
        *,
        retry: bool = False,
        served_template: str | None = None,
    ) -> Explanation:
        student = prepared.student
        return Explanation(
            text=text,
            user_known=prepared.user_known,
            input_tokens=len(student.input_ids),
            output_tokens=sum(1 for t in tokens if t not in self._special),
            history_used=student.history_used,
            token_ids=tuple(tokens),
            fallback_reason=problem if served_template is not None or retry else None,
            template=template,
            model_text=model_text,
            unfilled=unfilled,
            served_template=served_template or template,
            # The second pass counts the greedy candidate that failed before it.
            candidates_tried=tried + (1 if prepared.final else 0),
            evidence=tuple(
                claim_evidence(claims, student.evidence, student.window, prepared.job.item)
            ),
            retry=retry,
        )

    # --- conveniences for offline callers -----------------------------------------------

    def explain(self, jobs: Sequence[ExplainJob]) -> list[Explanation]:
        """Prepare, generate and finish `jobs` as one batch (raises on any failure)."""
        return self._complete([self.prepare(job) for job in jobs])

    def _complete(self, prepared: Sequence[Prepared]) -> list[Explanation]:
        """Generate and finish one batch, with the second pass for those that ask for it."""
        generated = self.generate(prepared)
        out = [self.finish(p, g) for p, g in zip(prepared, generated.generations, strict=True)]
        again = [k for k, e in enumerate(out) if e.retry]
        if again:
            wider = [self.widen(prepared[k]) for k in again]
            second = self.generate(wider).generations
            for k, p, g in zip(again, wider, second, strict=True):
                out[k] = self.finish(p, g)
        return out

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
            done = self._complete([prepared[i] for i in members])
            for index, explanation in zip(members, done, strict=True):
                out[index] = explanation
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
