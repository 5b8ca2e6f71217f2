"""The teacher interface: what the distillation loop asks of any Oracle.

A teacher turns a batch of requests into one result per request, in the same order. A
request that could not be answered becomes a `TeacherFailure` rather than an exception, so
one bad request never costs the rest of its batch and the caller decides what a run of
failures means (see `training.distill`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from training.data.types import Sample, UserProfile


@dataclass(frozen=True)
class TeacherRequest:
    """One sample to explain: the prompt for text-only teachers, the structure for the others."""

    sample: Sample
    prompt: str
    profile: UserProfile | None = None  # None for an unknown (or real, unprofiled) user


@dataclass(frozen=True)
class TeacherFailure:
    """A request the teacher could not answer (an HTTP error, a timeout, a crashed batch)."""

    reason: str


TeacherResult = str | TeacherFailure


class Teacher(Protocol):
    @property
    def name(self) -> str:
        """Recorded with every distilled line, so a dataset says which teacher wrote it."""
        ...

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """One result per request, in the order given."""
        ...


class TeacherResultCountError(RuntimeError):
    pass


def check_results(requests: Sequence[TeacherRequest], results: Sequence[TeacherResult]) -> None:
    """A teacher that returns the wrong number of results would silently misalign texts."""
    if len(results) != len(requests):
        raise TeacherResultCountError(
            f"teacher returned {len(results)} results for {len(requests)} requests"
        )
