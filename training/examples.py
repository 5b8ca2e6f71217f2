"""Distilled records -> student examples (encoder ids, user row, target ids).

The target is re-delexicalised here against the exact input window the student sees (its
token budget decides which history items get an `<hK>` slot), so training targets and the
serving-time slot values always refer to the same things.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from explain.input_format import InputConfig, build_input, recent_window
from explain.slots import slots_in
from explain.tokenizer import PrismTokenizer
from explain.users import UNKNOWN_ROW
from training.batches import StudentExample
from training.delexicalise import delexicalise
from training.records import DistilledRecord


def student_target(
    record: DistilledRecord, tokenizer: PrismTokenizer, config: InputConfig
) -> tuple[list[int], str]:
    """The record's target when the student's own input can fill every slot in it; else the
    teacher's text delexicalised again against that input (its token budget decides which
    history entries have a slot)."""
    history, item = list(record.history), record.item
    built = build_input(history, item, tokenizer, config)
    if record.target and set(slots_in(record.target)) <= built.slot_values.keys():
        return built.input_ids, record.target
    template = delexicalise(
        record.text, recent_window(history, config, item), item, built.evidence, built.history_used
    )
    return built.input_ids, template


Encoded = tuple[list[int], str, list[int]]  # encoder ids, user id, target ids


def encode_records(
    records: Iterable[DistilledRecord],
    tokenizer: PrismTokenizer,
    config: InputConfig,
    *,
    max_target_tokens: int,
) -> list[Encoded]:
    """Encoder and target ids per record; the costly part, independent of the user table."""
    out = []
    for record in records:
        input_ids, template = student_target(record, tokenizer, config)
        labels = tokenizer.encode(template)
        if len(labels) > max_target_tokens:
            labels = [*labels[: max_target_tokens - 1], tokenizer.eos_id]
        out.append((input_ids, record.user_id, labels))
    return out


def with_users(
    encoded: Iterable[Encoded], user_rows: Mapping[str, int], *, use_users: bool = True
) -> list[StudentExample]:
    return [
        StudentExample(ids, user_rows.get(user, UNKNOWN_ROW) if use_users else UNKNOWN_ROW, labels)
        for ids, user, labels in encoded
    ]


def to_examples(
    records: Iterable[DistilledRecord],
    tokenizer: PrismTokenizer,
    config: InputConfig,
    user_rows: Mapping[str, int],
    *,
    max_target_tokens: int,
    use_users: bool = True,
) -> list[StudentExample]:
    encoded = encode_records(records, tokenizer, config, max_target_tokens=max_target_tokens)
    return with_users(encoded, user_rows, use_users=use_users)
