"""The teacher's answers to a stream of samples, however the teacher works.

A teacher with `stream` (the OpenAI-compatible client) keeps its own number of requests in
flight and hands answers back as they arrive: no barrier between batches, so one slow answer
holds nothing back. A batch teacher (grounded, local HF) gets `batch_size` requests per
`explain` call. Either way each answer comes back with the sample it answers, and a sample
whose prompt cannot fit the teacher's budget comes back as `PromptTooLong` without being sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from training.data.types import Sample
from training.teachers.base import (
    Teacher,
    TeacherFailure,
    TeacherRequest,
    TeacherResult,
    check_results,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptTooLong:
    """The answer for a sample whose prompt cannot fit the teacher's budget: never asked."""


@dataclass(frozen=True)
class Answer:
    sample: Sample  # as the dataset has it
    request: TeacherRequest  # what the teacher was asked (its history possibly shortened)
    result: TeacherResult | PromptTooLong
    aspect: object = None  # the grounded teacher's side channel: what it wrote about
    template: str | None = None  # ... and its slotted template


def answers(
    teacher: Teacher,
    samples: Iterable[Sample],
    request_of: Callable[[Sample], TeacherRequest | None],
    batch_size: int,
) -> Iterator[Answer]:
    """Every sample's answer: streamed as answers arrive when the teacher can stream (no
    barrier between batches), else batch by batch through `explain`.

    A sample whose prompt does not fit the budget is answered here with a `PromptTooLong`
    result, so the caller writes every decision from one thread.
    """
    pending: dict[int, Sample] = {}  # request id -> sample, for what is in flight
    refused: list[Sample] = []

    def requests() -> Iterator[TeacherRequest]:
        for sample in samples:
            request = request_of(sample)
            if request is None:
                refused.append(sample)
                continue
            pending[id(request)] = sample
            yield request

    stream = getattr(teacher, "stream", None)
    if callable(stream):
        for request, result in stream(requests()):
            yield Answer(pending.pop(id(request)), request, result)
            while refused:
                yield _too_long(refused.pop())
    else:
        source = requests()
        while batch := list(islice(source, batch_size)):
            try:
                results = teacher.explain(batch)
            except Exception as exc:  # a crashed batch is one failure per request, not the end
                logger.warning("teacher %s raised on a batch: %r", teacher.name, exc)
                results = [TeacherFailure(f"teacher raised {exc!r}")] * len(batch)
            check_results(batch, results)
            aspects = _side_channel(teacher, "last_aspects", len(results))
            templates = _side_channel(teacher, "last_templates", len(results))
            for request, result, aspect, template in zip(
                batch, results, aspects, templates, strict=True
            ):
                yield Answer(pending.pop(id(request)), request, result, aspect, template)
            while refused:
                yield _too_long(refused.pop())
    while refused:
        yield _too_long(refused.pop())


def _too_long(sample: Sample) -> Answer:
    return Answer(sample, TeacherRequest(sample, ""), PromptTooLong())


def _side_channel(teacher: Teacher, name: str, size: int) -> list[Any]:
    values = getattr(teacher, name, None)
    return values if isinstance(values, list) and len(values) == size else [None] * size
