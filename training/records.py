"""The distilled record: one kept teacher answer, as a typed value with one parser.

Distillation writes one JSON line per record (`to_json_line`); every reader (the tokenizer
stage, the student's examples, evaluation) parses it with `DistilledRecord.from_dict` and
nothing else, so a field is read the same way everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explain.items import Item
from explain.types import ExplainJob


class RecordError(ValueError):
    pass


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class DistilledRecord:
    id: str
    user_id: str
    timestamp: int
    history: tuple[Item, ...]  # chronological: oldest first
    item: Item
    teacher: str
    template: str  # the prompt template id (`training.prompts.PromptTemplate.template_id`)
    text: str  # the teacher's answer, cleaned
    target: str  # `text` delexicalised against the student's input window
    aspect: str | None  # the target's aspect (`training.aspects.aspect_of`)
    profile_aspect: str | None = None  # the synthetic user's preferred aspect
    teacher_aspect: str | None = None  # what the teacher said it wrote about
    history_used: int = 0  # history entries the student input listed at distillation

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DistilledRecord:
        try:
            return cls(
                id=str(raw["id"]),
                user_id=str(raw["user_id"]),
                timestamp=int(raw.get("timestamp", 0)),
                history=tuple(Item.from_dict(h) for h in raw["history"]),
                item=Item.from_dict(raw["item"]),
                teacher=str(raw.get("teacher", "")),
                template=str(raw.get("template", "")),
                text=str(raw["text"]),
                target=str(raw.get("target", "")),
                aspect=_optional(raw.get("aspect")),
                profile_aspect=_optional(raw.get("profile_aspect")),
                teacher_aspect=_optional(raw.get("teacher_aspect")),
                history_used=int(raw.get("history_used", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not a distilled record ({exc!r}): {str(raw)[:120]}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "timestamp": self.timestamp,
            "history": [h.to_dict() for h in self.history],
            "item": self.item.to_dict(),
            "teacher": self.teacher,
            "template": self.template,
            "text": self.text,
            "target": self.target,
            "aspect": self.aspect,
            "profile_aspect": self.profile_aspect,
            "teacher_aspect": self.teacher_aspect,
            "history_used": self.history_used,
        }

    def to_json_line(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=_json_default) + "\n"

    def job(self, user_id: str | None = None) -> ExplainJob:
        """The request this record answers, as the explainer takes it."""
        return ExplainJob(user_id if user_id is not None else self.user_id, self.history, self.item)


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
