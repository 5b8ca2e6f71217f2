"""Delexicalising a teacher's natural text into the student's slot template for one request.

The inverse of `explain.rendering.fill_slots`, used only offline: distillation turns the
teacher's text into a training target, and evaluation reads a real teacher's aspect from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from explain.evidence import Evidence, decade_forms
from explain.items import Item
from explain.slots import (
    DECADE,
    DECADE_SHORT,
    ERA,
    FEATURE_SLOTS,
    ITEM,
    ITEM_ONLY,
    MAX_HISTORY_SLOTS,
    SHARED,
    SIMILAR,
    YEAR,
    history_slot,
)

# Other ways a teacher writes a feature; used only when delexicalising targets.
FEATURE_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "sci-fi": ("science fiction", "science-fiction", "scifi", "sci fi"),
    "film-noir": ("film noir", "noir"),
    "children's": ("children's", "kids'"),
}


def _surface_pattern(surface: str, *, case_sensitive: bool = False) -> re.Pattern[str]:
    # Word boundaries that also work for titles ending in punctuation ("E.T.", "Alien³").
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(r"(?<![\w])" + re.escape(surface) + r"(?![\w])", flags)


def title_variants(item: Item) -> tuple[tuple[str, int], ...]:
    """Ways a text may name the item, with a rank: 0 for the title, 1 for a short alias."""
    variants = {item.title.strip(): 0, item.display_title: 0}
    head = item.display_title.split(":")[0].strip()
    if head != item.display_title and len(head) >= 6:
        variants.setdefault(head, 1)
    return tuple(variants.items())


def delexicalise(
    text: str, recent_first: Sequence[Item], item: Item, evidence: Evidence, history_used: int
) -> str:
    """Turn a teacher's natural text into a slot template for this request.

    Longer mentions are replaced first, so "Star Wars: Episode V" wins over "Star Wars", and
    an item's own title wins over another item's short alias.
    A similar item is written as its `<sK>` slot, and a title from the item's decade as its
    `<eK>` slot, rather than its `<hK>` position: the evidence slots are what the student
    learns to use.
    """
    mentions: list[tuple[str, str, int]] = [(v, ITEM, r) for v, r in title_variants(item)]
    # Evidence slots win over history positions: they are what the student learns to use.
    evidence_slot = {pos: slot for slot, pos in zip(ERA, evidence.era_examples, strict=False)}
    evidence_slot |= {pos: slot for slot, pos in zip(SIMILAR, evidence.similar, strict=False)}
    for position in range(min(history_used, MAX_HISTORY_SLOTS)):
        slot = evidence_slot.get(position, history_slot(position))
        mentions.extend((v, slot, r) for v, r in title_variants(recent_first[position]))
    for position, slot in evidence_slot.items():
        if position >= history_used:
            mentions.extend((v, slot, r) for v, r in title_variants(recent_first[position]))
    for slots, features in (
        (SHARED, [g.genre for g in evidence.shared]),
        (ITEM_ONLY, list(evidence.item_only)),
    ):
        for slot, feature in zip(slots, features, strict=False):
            for surface in (feature, *FEATURE_SYNONYMS.get(feature.lower(), ())):
                mentions.append((surface, slot, 0))
    if item.year is not None:
        mentions.append((str(item.year), YEAR, 0))
        if evidence.era != "none":  # as in `slot_values`: no backed era, no decade slot
            long_form, short_form = decade_forms(item.year)
            mentions += [(long_form, DECADE, 0), (short_form, DECADE_SHORT, 0)]
            mentions.append((short_form[1:], DECADE_SHORT, 0))

    # Longest surface first, a full title before an alias of the same length; a span once
    # taken is never matched again.
    mentions.sort(key=lambda m: (-len(m[0]), m[2]))
    taken: list[tuple[int, int, str]] = []
    for surface, slot, _ in mentions:
        # One-word titles ("Up", "Her", "Big") only match with their capital: "grew up" is
        # not a mention of Up. Longer titles and features match in any case.
        one_word_title = slot not in FEATURE_SLOTS and len(surface.split()) == 1
        for match in _surface_pattern(surface, case_sensitive=one_word_title).finditer(text):
            start, end = match.span()
            if not any(start < t_end and t_start < end for t_start, t_end, _ in taken):
                taken.append((start, end, slot))
    out, cursor = [], 0
    for start, end, slot in sorted(taken):
        out.append(text[cursor:start])
        out.append(slot)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)
