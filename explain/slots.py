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
SIMILAR = ("<s1>", "<s2>")  # the history items most similar to the item
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
    *HISTORY,
)
FEATURE_SLOTS = frozenset({*SHARED, *ITEM_ONLY, DECADE, DECADE_SHORT, YEAR})
TITLE_SLOTS = frozenset({ITEM, *SIMILAR, *HISTORY})
SLOT_PATTERN = re.compile(r"<(?:item|g\d|a\d|decs|dec|year|s\d|h\d{1,2})>")

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
    """Every slot this request can fill, mapped to the words that replace it."""
    values = {ITEM: item.display_title}
    for slot, (feature, _) in zip(SHARED, evidence.shared, strict=False):
        values[slot] = feature_surface(feature)
    for slot, feature in zip(ITEM_ONLY, evidence.item_only, strict=False):
        values[slot] = feature_surface(feature)
    if item.year is not None:
        values[YEAR] = str(item.year)
        # The decade slots exist only when the history shares the decade: every sentence that
        # names "the '80s" ties it to what the user watched, so without a shared decade the
        # claim would be false, and the slot ban keeps the model from making it.
        if evidence.decade_count > 0:
            values[DECADE], values[DECADE_SHORT] = decade_forms(item.year)
    for slot, position in zip(SIMILAR, evidence.similar, strict=False):
        values[slot] = recent_first[position].display_title
    for position in range(min(history_used, MAX_HISTORY_SLOTS)):
        values[history_slot(position)] = recent_first[position].display_title
    return values


def slots_in(text: str) -> list[str]:
    return SLOT_PATTERN.findall(text)
