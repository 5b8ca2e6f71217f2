"""Teachers (the paper's Oracle): one interface, three implementations.

- `GroundedTeacher`: the built-in, offline default (faithful by construction).
- `OpenAICompatibleTeacher`: any `/v1/chat/completions` or `/v1/completions` endpoint.
- `HFTeacher`: a local Hugging Face model; imported lazily, since it needs torch and
  transformers and the other two do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.teachers.base import (
    Teacher,
    TeacherFailure,
    TeacherRequest,
    TeacherResult,
    TeacherResultCountError,
    check_results,
)
from training.teachers.grounded import GroundedExplanation, GroundedTeacher, choose_aspect
from training.teachers.openai import OpenAICompatibleTeacher

if TYPE_CHECKING:
    from training.teachers.hf import HFTeacher

__all__ = [
    "GroundedExplanation",
    "GroundedTeacher",
    "HFTeacher",
    "OpenAICompatibleTeacher",
    "Teacher",
    "TeacherFailure",
    "TeacherRequest",
    "TeacherResult",
    "TeacherResultCountError",
    "check_results",
    "choose_aspect",
]


def __getattr__(name: str) -> Any:
    if name == "HFTeacher":
        from training.teachers.hf import HFTeacher

        return HFTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
