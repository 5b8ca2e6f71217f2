"""Delexicalised generation: the slot tokens, and the words each request fills them with.

The student never writes a title, genre or decade itself. Its targets say `<item>`, `<g1>`,
`<dec>`, `<s1>`... and the service fills these from the request after decoding, so an
explanation can only name what the request contains. Which slots a request can fill is
itself evidence (`explain.evidence`): a slot the request cannot fill is banned while
decoding.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from explain.evidence import Evidence, decade_forms
from explain.items import Item

ITEM = "<item>"
SHARED = ("<g1>", "<g2>", "<g3>")  # item features the history also has, most frequent first
ITEM_ONLY = ("<a1>", "<a2>", "<a3>")  # item features the history does not have
DECADE = "<dec>"  # "1980s"
DECADE_SHORT = "<decs>"  # "'80s"
YEAR = "<year>"  # "1985"
SIMILAR = ("<s1>", "<s2>")  # history items that share genres with the item, most first
ERA = ("<e1>", "<e2>")  # history items from the item's decade (only when the era is supported)
MAX_HISTORY_SLOTS = 50


def history_slot(position: int) -> str:
    """The slot of the history item at `position` (0 = the most recent)."""
    return f"<h{position + 1}>"


HISTORY = tuple(history_slot(k) for k in range(MAX_HISTORY_SLOTS))
ALL_SLOTS: tuple[str, ...] = (
    ITEM,
    *SHARED,
    *ITEM_ONLY,
    DECADE,
    DECADE_SHORT,
    YEAR,
    *SIMILAR,
    *ERA,
    *HISTORY,
)
FEATURE_SLOTS = frozenset({*SHARED, *ITEM_ONLY, DECADE, DECADE_SHORT, YEAR})
TITLE_SLOTS = frozenset({ITEM, *SIMILAR, *ERA, *HISTORY})
SLOT_PATTERN = re.compile(r"<(?:item|g\d|a\d|decs|dec|year|s\d|e\d|h\d{1,2})>")

# Genres written in lower case inside a sentence ("a sci-fi film"); other features (Yelp
# categories such as "Mexican" or "Pizza") keep the casing the catalogue gives them.
COMMON_NOUN_GENRES = frozenset(
    {
        "action",
        "adventure",
        "animation",
        "children's",
        "children",
        "comedy",
        "crime",
        "documentary",
        "drama",
        "fantasy",
        "film-noir",
        "horror",
        "musical",
        "mystery",
        "romance",
        "sci-fi",
        "thriller",
        "war",
        "western",
        "family",
        "biography",
        "history",
        "music",
        "sport",
    }
)


def feature_surface(feature: str) -> str:
    return feature.lower() if feature.lower() in COMMON_NOUN_GENRES else feature


def slot_values(
    recent_first: Sequence[Item], item: Item, evidence: Evidence, history_used: int
) -> dict[str, str]:
    """Every slot this request can fill, mapped to the words that replace it.

    A slot exists only where the claim rules (`explain.claims`) support what it says: a
    genre slot for a genre the history really shares, the decade slots when the history
    backs the era, a similar-title slot for a title sharing genres with the item. The slots
    a request cannot fill are banned while decoding, so those claims cannot be made."""
    values = {ITEM: item.display_title if item.nameable else "this title"}
    for slot, support in zip(SHARED, evidence.shared, strict=False):
        values[slot] = feature_surface(support.genre)
    for slot, feature in zip(ITEM_ONLY, evidence.item_only, strict=False):
        values[slot] = feature_surface(feature)
    if item.year is not None:
        values[YEAR] = str(item.year)
        if evidence.era != "none":
            values[DECADE], values[DECADE_SHORT] = decade_forms(item.year)
    for slot, position in zip(SIMILAR, evidence.similar, strict=False):
        values[slot] = recent_first[position].display_title
    for slot, position in zip(ERA, evidence.era_examples, strict=False):
        values[slot] = recent_first[position].display_title
    for position in range(min(history_used, MAX_HISTORY_SLOTS)):
        if recent_first[position].nameable:
            values[history_slot(position)] = recent_first[position].display_title
    return values


def slots_in(text: str) -> list[str]:
    return SLOT_PATTERN.findall(text)
