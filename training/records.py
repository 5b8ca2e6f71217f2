"""The distilled record: one kept teacher answer, as a typed value with one parser.

Distillation writes one JSON line per record (`to_json_line`); every reader (the tokenizer
stage, the student's examples, evaluation) parses it with `DistilledRecord.from_dict` and
nothing else, so a field is read the same way everywhere.

On disk a record holds ids and text: its sample id, user id, the references of its history
items and of the recommended item (`training.item_table`: each distinct item form is stored
once beside the file), and the explanation. In memory the references are resolved to the
table's shared `Item` objects. Lines of the older form, with whole items inline, still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from explain.items import Item
from explain.types import ExplainJob
from training.item_table import ItemTable


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
    def from_dict(cls, raw: Mapping[str, Any], table: ItemTable | None = None) -> DistilledRecord:
        def resolve(value: Any) -> Item:
            if isinstance(value, str):
                if table is None:
                    raise RecordError(f"item reference {value!r} needs the item table")
                return table.item(value)
            return Item.from_dict(value)

        try:
            return cls(
                id=str(raw["id"]),
                user_id=str(raw["user_id"]),
                timestamp=int(raw.get("timestamp", 0)),
                history=tuple(resolve(h) for h in raw["history"]),
                item=resolve(raw["item"]),
                teacher=str(raw.get("teacher", "")),
                template=str(raw.get("template", "")),
                text=str(raw["text"]),
                target=str(raw.get("target", "")),
                aspect=_optional(raw.get("aspect")),
                profile_aspect=_optional(raw.get("profile_aspect")),
                teacher_aspect=_optional(raw.get("teacher_aspect")),
                history_used=int(raw.get("history_used", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:  # UnknownItemRefError is a KeyError
            raise RecordError(f"not a distilled record ({exc!r}): {str(raw)[:120]}") from exc

    def to_dict(self, table: ItemTable | None = None) -> dict[str, Any]:
        """Items as references into `table`, or inline without one."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "timestamp": self.timestamp,
            "history": [table.ref(h) if table is not None else h.to_dict() for h in self.history],
            "item": table.ref(self.item) if table is not None else self.item.to_dict(),
            "teacher": self.teacher,
            "template": self.template,
            "text": self.text,
            "target": self.target,
            "aspect": self.aspect,
            "profile_aspect": self.profile_aspect,
            "teacher_aspect": self.teacher_aspect,
            "history_used": self.history_used,
        }

    def to_json_line(self, table: ItemTable | None = None) -> str:
        line = json.dumps(self.to_dict(table), ensure_ascii=False, default=_json_default)
        return line + "\n"

    def job(self, user_id: str | None = None) -> ExplainJob:
        """The request this record answers, as the explainer takes it."""
        return ExplainJob(user_id if user_id is not None else self.user_id, self.history, self.item)


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
