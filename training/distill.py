"""Knowledge distillation (the paper's Algorithm 1): the teacher writes the golden explanations.

For each sample: format the prompt (fitted to the teacher's token budget), ask the teacher
(streamed as answers arrive when it can stream, else in batches), and keep the answer only
if it is not an error, not empty, not degenerate and names no title outside the request;
distillation is also a noise filter. A kept answer is delexicalised against the history
window the student input uses, and written as one JSON line.

The output is resumable. Kept samples are in `<output>`, dropped ones (id and reason) in
`<output>.dropped.jsonl`; a rerun skips both, so the teacher is never asked twice for the
same sample. Resuming reads only the ids (`distill_io.DoneIds`), and a line torn by a crash
is cut off from the end of the file. Teacher *errors* are not recorded: a rerun retries
them. Lines are appended in the order answers arrive and fsynced about once a second.

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
import time
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from explain import slots
from explain.input_format import InputConfig, TokenEncoder, build_input, recent_window
from explain.items import Item
from training.aspects import aspect_of
from training.data.types import Sample, UserProfile
from training.delexicalise import delexicalise, title_variants
from training.distill_io import (
    DROPPED_SUFFIX,
    CorruptDistillFileError,
    DoneIds,
    dropped_path,
    dump_line,
    read_distilled,
)
from training.distill_stats import DistillStats
from training.faithfulness import TitleMatcher
from training.item_table import ItemTable
from training.progress import ProgressBar
from training.prompt_budget import PromptBudget, fit_prompt
from training.prompts import DEFAULT_TEMPLATE, PromptTemplate
from training.records import DistilledRecord
from training.teacher_answers import Answer, PromptTooLong, answers
from training.teachers.base import Teacher, TeacherFailure, TeacherRequest
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
    budget: PromptBudget | None = None
    table: ItemTable | None = None  # where written records' items go (None: inline)
    stats: DistillStats = field(default_factory=DistillStats)
    consecutive_failures: int = 0
    last_failure: str = ""

    def request(self, sample: Sample) -> TeacherRequest | None:
        """The teacher's request, its history cut to the student's window and then to the
        prompt budget (oldest first); None when not even the bare prompt fits."""
        cut = sample.history[-self.config.max_history :] if self.config.max_history else ()
        seen = sample if len(cut) == len(sample.history) else replace(sample, history=cut)
        fitted = fit_prompt(self.template, seen, self.budget)
        if fitted is None:
            return None
        return TeacherRequest(fitted.sample, fitted.prompt, self.profiles.get(sample.user_id))

    def judge(
        self,
        sample: Sample,
        request: TeacherRequest,
        raw: str | PromptTooLong,
        teacher_aspect: object,
        teacher_template: str | None = None,
    ) -> tuple[DistilledRecord | None, dict[str, Any] | None]:
        """(record to keep, None) or (None, dropped line)."""
        stats, sid = self.stats, sample.sample_id
        if isinstance(raw, PromptTooLong):
            stats.too_long += 1
            return None, {"id": sid, "reason": "too_long"}
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
        # The student's window, not the teacher's: a prompt budget may have shown the teacher
        # fewer items, and the student's slots and evidence positions index this one.
        recent_first = recent_window(sample.history, self.config, sample.item)
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

    def record(self, answer: Answer, out: IO[str], dropped: IO[str]) -> bool:
        """Judge and write one answer; True when it ends a run of too many failures.

        (A teacher that recovers before the run is long enough gets to go on.)
        """
        if isinstance(answer.result, TeacherFailure):
            self.stats.errors += 1
            self.consecutive_failures += 1
            self.last_failure = answer.result.reason
            return self.consecutive_failures >= self.max_consecutive_failures
        self.consecutive_failures = 0
        request = answer.request
        record, drop = self.judge(
            answer.sample, request, answer.result, answer.aspect, answer.template
        )
        if record is not None:
            out.write(record.to_json_line(self.table))
        if drop is not None:
            dropped.write(dump_line(drop))
        return False


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
    prompt_budget: PromptBudget | None = None,
    batch_size: int = 16,
    max_consecutive_failures: int = 20,
    sync_interval_s: float = 1.0,
    progress: bool = True,
) -> DistillStats:
    """Distil `samples` into `output` (JSON lines), resuming whatever is there already.

    `tokenizer` is the student's: its token budget decides how many history entries the
    student input lists (`history_used`), hence which `<hK>` slots a target may use. Without
    it a word count stands in, which overestimates the window for BPE tokenizers.
    `catalogue_titles`: the titles a teacher could invent; None skips the hallucination
    check. `prompt_budget`: the teacher's (see `training.prompt_budget`); a sample whose
    prompt cannot fit is dropped as `too_long`. `batch_size` is what a batch teacher
    (`explain`) gets at once; a streaming teacher keeps its own number in flight. Lines
    are fsynced at most every `sync_interval_s` (a crash loses at most that much work,
    which a rerun asks again). Raises `TeacherUnavailableError` after
    `max_consecutive_failures` teacher errors in a row; every line written until then stays.
    """
    if batch_size < 1 or max_consecutive_failures < 1:
        raise ValueError("batch_size and max_consecutive_failures must be at least 1")
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    # Resume: only the ids of what is done, as 64-bit integers, read line by line.
    done = DoneIds.read(output, dropped_path(output))
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
        budget=prompt_budget,
        table=ItemTable.beside(output),
    )
    stats = run.stats
    stats.existing = done.kept
    total = len(samples) if isinstance(samples, Sized) else None

    def todo() -> Iterator[Sample]:
        # Runs wherever the teacher reads its requests (a streaming teacher's loop thread):
        # it touches only `done` and the skip counters, which nothing else writes meanwhile.
        for sample in samples:
            status = done.claim(sample.sample_id)
            if status is None:
                yield sample
            elif status == "new":
                stats.duplicates += 1
            elif status == "kept":
                stats.skipped_existing += 1
            else:
                stats.skipped_dropped += 1

    with (
        output.open("a", encoding="utf-8") as out,
        dropped_path(output).open("a", encoding="utf-8") as dropped,
        ProgressBar("distill", total, enabled=progress) as bar,
    ):
        last_sync = time.monotonic()
        try:
            for answer in answers(teacher, todo(), run.request, batch_size):
                if run.record(answer, out, dropped):
                    written = stats.existing + stats.kept
                    raise TeacherUnavailableError(
                        f"teacher {teacher.name} failed {run.consecutive_failures} times in a "
                        f"row (last: {run.last_failure}); wrote {stats.kept} explanations this "
                        f"run, {written} in {output}. Rerun to resume.",
                        stats,
                    )
                skipped = stats.skipped_existing + stats.skipped_dropped + stats.duplicates
                bar.set(stats.kept + stats.dropped + stats.errors + skipped)
                if time.monotonic() - last_sync >= sync_interval_s:
                    _sync(out, dropped)
                    last_sync = time.monotonic()
                    bar.note(f"kept {stats.kept}, dropped {stats.dropped}, errors {stats.errors}")
        finally:
            _sync(out, dropped)
            if run.table is not None:
                run.table.close()
    stats.seconds = time.perf_counter() - started
    logger.info("distilled into %s: %s", output, stats.summary())
    return stats


def _sync(*handles: IO[str]) -> None:
    for handle in handles:
        handle.flush()
        os.fsync(handle.fileno())
