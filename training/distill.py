"""Knowledge distillation (the paper's Algorithm 1): the teacher writes the golden explanations.

For each sample: format the prompt, ask the teacher (in batches), and keep the answer only
if it is not an error, not empty, not degenerate and names no title outside the request;
distillation is also a noise filter. A kept answer is delexicalised against the history
window the student input uses, and written as one JSON line.

The output is resumable. Kept samples are in `<output>`, dropped ones (id and reason) in
`<output>.dropped.jsonl`; a rerun skips both, so the teacher is never asked twice for the
same sample. Teacher *errors* are not recorded: a rerun retries them. Lines are appended
and fsynced per batch, and a line torn by a crash is cut off on the next start.

What the teacher sees: the sample's history cut to `input_config.max_history` items, the
window the student's evidence is computed on. The student's input text may list fewer (its
token budget drops the oldest entries), so a teacher may name a history title that has no
slot in the student input; such an answer is dropped as `unslotted`, because the student
would learn to write that title literally.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from explain import slots
from explain.input_format import InputConfig, TokenEncoder, build_input
from explain.items import Item
from training.aspects import aspect_of
from training.data.types import Sample, UserProfile
from training.delexicalise import delexicalise, title_variants
from training.distill_io import (
    DROPPED_SUFFIX,
    CorruptDistillFileError,
    dropped_path,
    dump_line,
    load_jsonl,
    read_distilled,
)
from training.faithfulness import TitleMatcher
from training.prompts import DEFAULT_TEMPLATE, PromptTemplate, format_teacher_prompt
from training.records import DistilledRecord
from training.teachers.base import Teacher, TeacherFailure, TeacherRequest, check_results
from training.teachers.quality import clean_output, degeneracy

__all__ = [
    "DROPPED_SUFFIX",
    "CorruptDistillFileError",
    "DistillStats",
    "TeacherUnavailableError",
    "WordCountEncoder",
    "distill",
    "dropped_path",
    "ordinary_word_titles",
    "read_distilled",
]

logger = logging.getLogger(__name__)


class TeacherUnavailableError(RuntimeError):
    def __init__(self, message: str, stats: DistillStats) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass
class DistillStats:
    """Counts of one run. `existing` lines were in the file before it started."""

    kept: int = 0
    errors: int = 0
    empty: int = 0
    degenerate: int = 0
    hallucinated: int = 0  # samples dropped for naming a catalogue title outside the request
    unslotted: int = 0  # samples dropped for naming a history title the student has no slot for
    ambiguous: int = 0  # a one-word title ("Up", "Her") only occurs as an ordinary word
    skipped_existing: int = 0
    skipped_dropped: int = 0
    duplicates: int = 0  # sample ids seen twice in the input
    hallucinated_titles: int = 0  # invented title mentions seen, over all samples
    invented: Counter[str] = field(default_factory=Counter)  # which titles were invented
    existing: int = 0

    @property
    def dropped(self) -> int:
        return self.empty + self.degenerate + self.hallucinated + self.unslotted + self.ambiguous

    def summary(self) -> str:
        return (
            f"kept {self.kept} (+{self.existing} already there), errors {self.errors}, "
            f"dropped {self.dropped} (empty {self.empty}, degenerate {self.degenerate}, "
            f"hallucinated {self.hallucinated}, unslotted {self.unslotted}, ambiguous "
            f"{self.ambiguous}), skipped "
            f"{self.skipped_existing + self.skipped_dropped}, duplicates {self.duplicates}"
        )


class WordCountEncoder:
    """A stand-in for the student tokenizer: one token per word, plus BOS and EOS."""

    def encode(self, text: str) -> list[int]:
        return [0] * (len(text.split()) + 2)


def ordinary_word_titles(text: str, items: Iterable[Item]) -> set[str]:
    """One-word titles that `text` has only in another case, as ordinary words ("grew up").

    Delexicalising matches titles case-insensitively, so "grew up" next to a history item
    "Up" would become "grew <h3>" and teach the student to put a title there.
    """
    found = set()
    for item in items:
        for variant, _ in title_variants(item):
            if len(variant.split()) != 1:
                continue
            pattern = re.compile(rf"(?<![\w]){re.escape(variant)}(?![\w])", re.IGNORECASE)
            if any(m.group(0) != variant for m in pattern.finditer(text)):
                found.add(variant)
    return found


@dataclass
class _Run:
    """What one `distill` call needs while it works through the batches."""

    teacher: Teacher
    template: PromptTemplate
    profiles: Mapping[str, UserProfile]
    config: InputConfig
    encoder: TokenEncoder
    matcher: TitleMatcher | None
    max_consecutive_failures: int
    stats: DistillStats = field(default_factory=DistillStats)
    consecutive_failures: int = 0
    last_failure: str = ""

    def requests(self, batch: Sequence[Sample]) -> list[TeacherRequest]:
        out = []
        for sample in batch:
            cut = sample.history[-self.config.max_history :] if self.config.max_history else ()
            seen = sample if len(cut) == len(sample.history) else replace(sample, history=cut)
            prompt = format_teacher_prompt(self.template, seen)
            out.append(TeacherRequest(seen, prompt, self.profiles.get(sample.user_id)))
        return out

    def judge(
        self,
        sample: Sample,
        request: TeacherRequest,
        raw: str,
        teacher_aspect: object,
        teacher_template: str | None = None,
    ) -> tuple[DistilledRecord | None, dict[str, Any] | None]:
        """(record to keep, None) or (None, dropped line)."""
        stats, sid = self.stats, sample.sample_id
        text = clean_output(raw)
        if not text:
            stats.empty += 1
            return None, {"id": sid, "reason": "empty"}
        kind = degeneracy(text, request.prompt, self.template.text)
        if kind:
            stats.degenerate += 1
            return None, {"id": sid, "reason": "degenerate", "detail": kind}
        request_items = [*request.sample.history, sample.item]
        if self.matcher is not None:
            invented = self.matcher.hallucinated(text, request_items)
            if invented:
                stats.hallucinated += 1
                stats.hallucinated_titles += len(invented)
                stats.invented.update(invented)
                return None, {"id": sid, "reason": "hallucinated", "detail": sorted(invented)}
        student = build_input(sample.history, sample.item, self.encoder, self.config)
        recent_first = list(reversed(request.sample.history))
        slotted = [
            sample.item,
            *recent_first[: min(student.history_used, slots.MAX_HISTORY_SLOTS)],
            *(recent_first[p] for p in student.evidence.similar),
        ]
        clash = ordinary_word_titles(text, slotted)
        if clash:
            stats.ambiguous += 1
            return None, {"id": sid, "reason": "ambiguous", "detail": sorted(clash)}
        if teacher_template is not None:
            # A teacher that writes with slots (the grounded one) gives its template as it is.
            target = teacher_template
            missing = sorted(set(slots.slots_in(target)) - student.slot_values.keys())
            if missing:
                stats.unslotted += 1
                return None, {"id": sid, "reason": "unslotted", "detail": missing}
        else:
            target = delexicalise(
                text, recent_first, sample.item, student.evidence, student.history_used
            )
        literal = TitleMatcher(request_items).mentions(target)
        if literal:
            stats.unslotted += 1
            return None, {"id": sid, "reason": "unslotted", "detail": sorted(literal)}
        stats.kept += 1
        profile = request.profile
        return DistilledRecord(
            id=sid,
            user_id=sample.user_id,
            timestamp=sample.timestamp,
            history=tuple(sample.history),
            item=sample.item,
            teacher=self.teacher.name,
            template=self.template.template_id,
            text=text,
            target=target,
            aspect=aspect_of(target),
            profile_aspect=profile.aspect if profile else None,
            teacher_aspect=None if teacher_aspect is None else str(teacher_aspect),
            history_used=student.history_used,
        ), None

    def process(self, batch: Sequence[Sample], out: IO[str], dropped: IO[str]) -> bool:
        """Ask, judge and write one batch; True when it ends on too many failures in a row.

        (A teacher that recovers within the batch gets to go on.)
        """
        requests = self.requests(batch)
        try:
            results = self.teacher.explain(requests)
        except Exception as exc:  # a crashed batch is one failure per request, not the end
            logger.warning("teacher %s raised on a batch: %r", self.teacher.name, exc)
            results = [TeacherFailure(f"teacher raised {exc!r}")] * len(requests)
        check_results(requests, results)
        aspects = getattr(self.teacher, "last_aspects", None)
        if not isinstance(aspects, list) or len(aspects) != len(results):
            aspects = [None] * len(results)
        templates = getattr(self.teacher, "last_templates", None)
        if not isinstance(templates, list) or len(templates) != len(results):
            templates = [None] * len(results)
        for sample, request, result, aspect, template in zip(
            batch, requests, results, aspects, templates, strict=True
        ):
            if isinstance(result, TeacherFailure):
                self.stats.errors += 1
                self.consecutive_failures += 1
                self.last_failure = result.reason
                continue
            self.consecutive_failures = 0
            record, drop = self.judge(sample, request, result, aspect, template)
            if record is not None:
                out.write(record.to_json_line())
            if drop is not None:
                dropped.write(dump_line(drop))
        for handle in (out, dropped):
            handle.flush()
            os.fsync(handle.fileno())
        return self.consecutive_failures >= self.max_consecutive_failures


def distill(
    samples: Iterable[Sample],
    teacher: Teacher,
    output: Path,
    *,
    profiles: Mapping[str, UserProfile] | None = None,
    template: PromptTemplate | str = DEFAULT_TEMPLATE,
    input_config: InputConfig | None = None,
    catalogue_titles: Iterable[Item | str] | None = None,
    tokenizer: TokenEncoder | None = None,
    batch_size: int = 16,
    max_consecutive_failures: int = 20,
    progress: bool = True,
) -> DistillStats:
    """Distil `samples` into `output` (JSON lines), resuming whatever is there already.

    `tokenizer` is the student's: its token budget decides how many history entries the
    student input lists (`history_used`), hence which `<hK>` slots a target may use. Without
    it a word count stands in, which overestimates the window for BPE tokenizers.
    `catalogue_titles`: the titles a teacher could invent; None skips the hallucination
    check. Raises `TeacherUnavailableError` after `max_consecutive_failures` teacher errors
    in a row; every line written until then stays.
    """
    if batch_size < 1 or max_consecutive_failures < 1:
        raise ValueError("batch_size and max_consecutive_failures must be at least 1")
    output.parent.mkdir(parents=True, exist_ok=True)
    kept_ids = {str(r.get("id")) for r in load_jsonl(output, repair=True)}
    dropped_ids = {str(r.get("id")) for r in load_jsonl(dropped_path(output), repair=True)}
    run = _Run(
        teacher=teacher,
        template=template
        if isinstance(template, PromptTemplate)
        else PromptTemplate.from_text(template),
        profiles=profiles or {},
        config=input_config or InputConfig(),
        encoder=tokenizer or WordCountEncoder(),
        matcher=TitleMatcher(catalogue_titles) if catalogue_titles is not None else None,
        max_consecutive_failures=max_consecutive_failures,
    )
    stats = run.stats
    stats.existing = len(kept_ids)
    total = len(samples) if isinstance(samples, Sized) else None
    seen: set[str] = set()
    with (
        output.open("a", encoding="utf-8") as out,
        dropped_path(output).open("a", encoding="utf-8") as dropped,
        tqdm(total=total, unit="sample", desc="distill", disable=not progress) as bar,
    ):

        def flush(batch: list[Sample]) -> None:
            if run.process(batch, out, dropped):
                written = stats.existing + stats.kept
                raise TeacherUnavailableError(
                    f"teacher {teacher.name} failed {run.consecutive_failures} times in a row "
                    f"(last: {run.last_failure}); wrote {stats.kept} explanations this run, "
                    f"{written} in {output}. Rerun to resume.",
                    stats,
                )
            bar.update(len(batch))
            bar.set_postfix(kept=stats.kept, dropped=stats.dropped, errors=stats.errors)

        batch: list[Sample] = []
        for sample in samples:
            sid = sample.sample_id
            if sid in seen:
                stats.duplicates += 1
            elif sid in kept_ids:
                stats.skipped_existing += 1
            elif sid in dropped_ids:
                stats.skipped_dropped += 1
            else:
                seen.add(sid)
                batch.append(sample)
                if len(batch) == batch_size:
                    flush(batch)
                    batch = []
                continue
            seen.add(sid)
            bar.update(1)
        if batch:
            flush(batch)
    logger.info("distilled into %s: %s", output, stats.summary())
    return stats
