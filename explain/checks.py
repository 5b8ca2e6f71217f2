"""Telling a usable slot template from a broken one, the same way in training and serving.

A small student fails in a few recognisable ways. It can write no words at all. It can start
a slot it is not allowed to finish: the tokenizer writes the space before a slot as its own
token, so when the slot the model reached for is banned (the request cannot fill it), the
decoded template keeps a space with no slot after it ("captures the  feel"). And it can
stutter or loop ("the same same same vein"). The service replaces such a template by the
evidence sentence and counts it; evaluation reports how often that would happen.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

NO_WORDS, DANGLING_SLOT, STUTTER, LOOPING = "no_words", "dangling_slot", "stutter", "looping"
DEFECTS = (NO_WORDS, DANGLING_SLOT, STUTTER, LOOPING)

WORD = re.compile(r"<[a-z0-9]+>|[\w'’-]+")
_STUTTER = re.compile(r"(?<![\w<'’-])([\w'’-]+) +\1(?![\w>'’-])", re.IGNORECASE)
LOOP_NGRAM, LOOP_TIMES = 3, 3


def words_of(text: str) -> list[str]:
    """Lower-cased words, with slot tokens kept whole."""
    return [w.lower() for w in WORD.findall(text)]


def is_looping(words: Sequence[str]) -> bool:
    """One 3-word phrase three times or more."""
    grams = Counter(zip(*(words[k:] for k in range(LOOP_NGRAM)), strict=False))
    return bool(grams) and grams.most_common(1)[0][1] >= LOOP_TIMES


def has_stutter(text: str) -> bool:
    """The same word twice in a row, with only a space between ("for you. You" is fine).

    Slot tokens do not count: "<s1> <s1>" is the filler's business (`slots.fill_slots`)."""
    return _STUTTER.search(text) is not None


def template_defect(template: str) -> str | None:
    """Why a decoded slot template must not be served, or None when it looks usable.

    `NO_WORDS` is decided on the filled text (a template of unfillable slots has none), so
    `slots.render` checks it; this covers the rest."""
    if "  " in template.strip():
        return DANGLING_SLOT
    if has_stutter(template):
        return STUTTER
    if is_looping(words_of(template)):
        return LOOPING
    return None
