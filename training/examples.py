"""Distilled records -> student examples (encoder ids, user row, target ids).

The target is re-delexicalised here against the exact input window the student sees (its
token budget decides which history items get an `<hK>` slot), so training targets and the
serving-time slot values always refer to the same things.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from model_store import slots
from model_store.items import Item
from model_store.prompt import InputConfig, build_input, recent_window
from model_store.tokenizer import PrismTokenizer
from model_store.users import UNKNOWN_ROW
from training.finetune import StudentExample


def item_from_json(raw: Mapping[str, Any]) -> Item:
    return Item(str(raw["title"]), raw.get("item_id"), dict(raw.get("attributes") or {}))


def item_to_json(item: Item) -> dict[str, Any]:
    return {"item_id": item.item_id, "title": item.title, "attributes": dict(item.attributes)}


def request_of(record: Mapping[str, Any]) -> tuple[list[Item], Item]:
    return [item_from_json(h) for h in record["history"]], item_from_json(record["item"])


def student_target(
    record: Mapping[str, Any], tokenizer: PrismTokenizer, config: InputConfig
) -> tuple[list[int], str]:
    history, item = request_of(record)
    built = build_input(history, item, tokenizer, config)
    template = slots.delexicalise(
        str(record["text"]),
        recent_window(history, config),
        item,
        built.evidence,
        built.history_used,
    )
    return built.input_ids, template


def to_examples(
    records: Iterable[Mapping[str, Any]],
    tokenizer: PrismTokenizer,
    config: InputConfig,
    user_rows: Mapping[str, int],
    *,
    max_target_tokens: int,
    use_users: bool = True,
) -> list[StudentExample]:
    out = []
    for record in records:
        input_ids, template = student_target(record, tokenizer, config)
        labels = tokenizer.encode(template)
        if len(labels) > max_target_tokens:
            labels = [*labels[: max_target_tokens - 1], tokenizer.eos_id]
        row = user_rows.get(str(record["user_id"]), UNKNOWN_ROW) if use_users else UNKNOWN_ROW
        out.append(StudentExample(input_ids, row, labels))
    return out
