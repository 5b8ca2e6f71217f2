"""Claim rules: what an explanation may say, and what in the request supports it.

Every kind of claim has a written support rule computed from the request alone. The same
rules decide which slots exist (a slot the rules do not support is banned while decoding),
which sentences the built-in teacher may write, what the evaluation counts as false, and what
the serving-time verifier accepts:

- `shared_genre`, basic ("a sci-fi film, like others you have watched"): at least 2 history
  items have the genre, and at least 10 % of the history items whose genres are known;
- `shared_genre`, strong ("you keep coming back to sci-fi", "clearly", "streak"): at least 3
  items and at least 40 %;
- `era`, basic ("films from the 1980s, like this one"): at least 2 history items from the
  item's decade, and at least half of the history items whose year is known;
- `era`, strong ("the 1980s clearly suit your taste", "your era"): at least 3 and 60 %;
- `similar_title` ("in the same vein as Alien", "if you liked Alien"): the title shares at
  least one genre with the item (both with known genres);
- `novelty` ("a fresh pick", "a change of pace", "something new"): the item's genres are
  known, every history item's genres are known, and none shares any of them; or there is no
  history at all; never when the history holds the item itself (a rewatch, which is left out
  of the history the other rules read: `explain.input_format.recent_window`);
- `history_reference` ("with Alien among your recent watches"): the title is in the history
  (no similarity is claimed); said of several films ("your other recent watches", "your
  recent watches", "Alien among them", "your usual picks"): the history holds at least 2
  distinct films (one film is not "your recent watches"). The built-in teacher does not
  follow this rule yet (six of its patterns need one film; the default model was trained on
  its answers as they are): the verifier refuses those sentences for a one-film history;
- `item_fact` ("a comedy film", "released in 1985"): the item's own metadata says so.

Intensity words ("clearly", "keep returning to", "streak", "soft spot", "again and again")
turn a genre or era claim into a strong one. A sentence with an intensity word and nothing
for it to intensify makes an unsupported claim. No explanation states how many films share
something: a student copies such words without their counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Level = Literal["none", "basic", "strong"]
ClaimType = Literal[
    "shared_genre", "era", "similar_title", "novelty", "history_reference", "item_fact"
]
CLAIM_TYPES: tuple[ClaimType, ...] = (
    "shared_genre",
    "era",
    "similar_title",
    "novelty",
    "history_reference",
    "item_fact",
)

GENRE_BASIC = (2, 0.10)  # (history items with the genre, share of the history with genres)
GENRE_STRONG = (3, 0.40)
ERA_BASIC = (2, 0.50)  # (history items from the decade, share of the dated history items)
ERA_STRONG = (3, 0.60)
NOVELTY_MAX_SHARE = 0.0  # history items sharing any item genre, of those with genres
NOVELTY_MAX_COUNT = 0  # "new to you" means new: not one history item shares its genres
SEVERAL_FILMS = 2  # distinct history films that "your recent watches" needs


def level(count: int, total: int, basic: tuple[int, float], strong: tuple[int, float]) -> Level:
    """How strongly `count` of `total` items back a pattern claim."""
    if total <= 0:
        return "none"
    share = count / total
    if count >= strong[0] and share >= strong[1]:
        return "strong"
    if count >= basic[0] and share >= basic[1]:
        return "basic"
    return "none"


def genre_level(count: int, with_genres: int) -> Level:
    return level(count, with_genres, GENRE_BASIC, GENRE_STRONG)


def era_level(count: int, dated: int) -> Level:
    return level(count, dated, ERA_BASIC, ERA_STRONG)


def novel(overlapping: int, with_genres: int, history_size: int, item_has_genres: bool) -> bool:
    """The item brings what the history lacks (or there is no history to compare with)."""
    if history_size == 0:
        return True
    if not item_has_genres or with_genres < history_size:
        return False  # a history item of unknown genres may well share the item's
    return overlapping <= NOVELTY_MAX_COUNT and overlapping / with_genres <= NOVELTY_MAX_SHARE


# --- finding the claims a sentence makes --------------------------------------------------

_SLOT = re.compile(r"<(item|g\d|a\d|decs|dec|year|s\d|e\d|h\d{1,2})>")
_INTENSITY = re.compile(
    r"\b(?:clearly|keep (?:coming back|returning|choosing|picking|showing)|keeps? showing|"
    r"again and again|time and again|streak|soft spot|love of|you love|how often|"
    r"your era|lean toward|runs through|seek out|can't get enough|never a bad idea|"
    r"a fan of|your favourites|favourite)\b",
    re.IGNORECASE,
)
_NOVELTY = re.compile(
    r"\b(?:fresh pick|widen your taste|something new|change of pace|new direction|"
    r"outside your usual|something different|new to your list|pleasant surprise|"
    r"departure from)\b",
    re.IGNORECASE,
)
_SIMILARITY = re.compile(
    r"\b(?:in common with|same vein|in spirit|companion piece|same cloth|much like|echoes|"
    r"double bill|follow-on|next step|same reasons|feel at home|work(?:ed)? for you|"
    r"what made|because you watched|likely to enjoy|enjoyed|you liked|fan of|"
    r"would sit well next to|shares?|like)\b",
    re.IGNORECASE,
)
# Words that speak of several history films at once (a history_reference made "strong").
_SEVERAL = re.compile(
    r"\b(?:your (?:other )?recent watches|among them|your usual (?:picks|choices))\b",
    re.IGNORECASE,
)
_ERA_WORDS = re.compile(r"\b(?:that decade|that era)\b", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ClaimUse:
    """One claim a sentence makes: its type, how strong, and the slots it is about."""

    claim: ClaimType
    strength: Level  # what the wording asks for: "basic" or "strong"
    slots: tuple[str, ...]


def sentences(template: str) -> list[str]:
    return [s for s in SENTENCE_END.split(template.strip()) if s]


def claims_in(template: str) -> list[ClaimUse]:
    """The claims a slot template makes, sentence by sentence (lexicon and slot kinds)."""
    found: list[ClaimUse] = []
    for sentence in sentences(template):
        used = [f"<{m}>" for m in _SLOT.findall(sentence)]
        strength: Level = "strong" if _INTENSITY.search(sentence) else "basic"
        genres = tuple(s for s in used if s[1] == "g")
        decades = tuple(s for s in used if s in ("<dec>", "<decs>"))
        era_titles = tuple(s for s in used if s[1] == "e")
        titles = tuple(s for s in used if s[1] in "sh")
        if genres:
            found.append(ClaimUse("shared_genre", strength if not decades else "basic", genres))
        if decades or era_titles or _ERA_WORDS.search(sentence):
            era_strength: Level = strength if not genres else "basic"
            found.append(ClaimUse("era", era_strength, decades + era_titles))
        if strength == "strong" and not genres and not decades:
            # Intensity with nothing it could intensify: "you clearly love this kind of film".
            found.append(ClaimUse("shared_genre", "strong", ()))
        similarity = bool(titles) and _SIMILARITY.search(sentence) is not None
        several = _SEVERAL.search(sentence) is not None
        if similarity:
            found.append(ClaimUse("similar_title", "basic", titles))
        if (titles and not similarity) or several:
            # "strong": several films are spoken of ("your other recent watches").
            found.append(
                ClaimUse(
                    "history_reference",
                    "strong" if several else "basic",
                    () if similarity else titles,
                )
            )
        if _NOVELTY.search(sentence):
            found.append(ClaimUse("novelty", "basic", ()))
        facts = tuple(s for s in used if s[1] == "a" or s == "<year>")
        if facts:
            found.append(ClaimUse("item_fact", "basic", facts))
    return found
