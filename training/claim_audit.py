"""Counting false claims in served explanations, by claim type, for evaluation.

The claims are found in the text a user reads (not in the model's template), with this
module's own phrase lists: a decade named ("1980s", "'80s"), a similarity phrase in a
sentence that names a history title, a novelty phrase, a genre of the item said of the
user ("your taste for sci-fi", "sci-fi, like others you have watched"), several films
spoken of at once ("your recent watches", "Alien among them", "your usual picks": true when
the history holds at least 2 distinct films besides the item). Whether each holds
is decided by the written rules of `explain.claims`, the same rules the teacher writes by
and the service verifies with: that sharing is the point of having written them down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from explain.claims import era_level, genre_level, novel
from explain.items import Item

_DECADE = re.compile(r"(?<![\w])(?:(1[0-9]|20)([0-9])0s|['’]([0-9])0s)(?![\w])")
_SIMILAR = re.compile(
    r"in common with|same vein|in spirit|companion piece|same cloth|much like|echoes|"
    r"double bill|follow-on|if you (?:enjoyed|liked)|you liked|because you watched|"
    r"same reasons|feel at home|would sit well next to|\bshares?\b|\blike\b",
    re.IGNORECASE,
)
_NOVEL = re.compile(
    r"fresh pick|widen your taste|something new|change of pace|new direction|"
    r"outside your usual|something different|new to your list|departure",
    re.IGNORECASE,
)
_STRONG = re.compile(
    r"clearly|keep (?:coming back|returning|choosing|showing)|again and again|streak|"
    r"soft spot|love of|you love|how often|your era|lean toward|runs through|seek out|"
    r"a fan of|never a bad idea|clear taste",
    re.IGNORECASE,
)
_SEVERAL = re.compile(r"recent watches|among them|\byour other\b|\byour usual\b", re.IGNORECASE)
_LIKE = re.compile(r"\blike\b", re.IGNORECASE)
_ABOUT_USER = re.compile(r"\byou(?:r)?\b", re.IGNORECASE)
_SPLIT = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Finding:
    claim: str  # "era", "similar_title", "novelty", "shared_genre", "several_films"
    false: bool


def _genres(item: Item) -> set[str]:
    return {f.lower() for f in item.features}


def _decade(item: Item) -> int | None:
    return item.year - item.year % 10 if item.year is not None else None


def _named(sentence: str, history: Sequence[Item], item: Item) -> list[Item]:
    """History items the sentence names, longest title first: "The Adventures of Robin
    Hood" is not also a mention of "Robin Hood", nor is "The Big Heat" (the item) one of
    "Big"."""
    taken: list[tuple[int, int]] = []
    named = []
    for past in sorted([item, *history], key=lambda p: -len(p.display_title)):
        title = past.display_title
        for match in re.finditer(rf"(?<![\w]){re.escape(title)}(?![\w])", sentence):
            if title and not any(s < match.end() and match.start() < e for s, e in taken):
                taken.append(match.span())
                if past is not item:
                    named.append(past)
                break
    return named


def audit(text: str, history: Sequence[Item], item: Item) -> list[Finding]:
    """Every claim `text` makes about this request, and whether it is false."""
    findings: list[Finding] = []
    item_genres = _genres(item)
    with_genres = [p for p in history if p.features]
    decade = _decade(item)
    dated = [p for p in history if p.year is not None]
    films = {p.display_title.casefold() for p in history} - {item.display_title.casefold()}
    masked = text
    for title in sorted({p.display_title for p in [item, *history]}, key=len, reverse=True):
        masked = masked.replace(title, " ")  # "Mars Attacks!" is a title, "2001" in it too
    for sentence, plain in zip(_SPLIT.split(text), _SPLIT.split(masked), strict=False):
        strong = bool(_STRONG.search(plain))
        era_false = []  # one era claim per sentence, however many times it names the decade
        for match in _DECADE.finditer(plain):
            named = _decade_of(match, decade)
            same = [p for p in dated if named is not None and _decade(p) == named]
            backed = era_level(len(same), len(dated))
            wrong = named is None or named != decade
            era_false.append(wrong or backed == "none" or (strong and backed != "strong"))
        if era_false:
            findings.append(Finding("era", any(era_false)))
        # "From the 1990s, like The Truman Show": "like" compares the era, not the films.
        cue = _LIKE.sub(" ", plain) if _DECADE.search(plain) else plain
        if _SIMILAR.search(cue):
            for past in _named(sentence, history, item):
                if past.features and item_genres:
                    findings.append(Finding("similar_title", not (_genres(past) & item_genres)))
        if _NOVEL.search(plain) and (item_genres or not history):
            overlapping = sum(1 for p in with_genres if _genres(p) & item_genres)
            fresh = novel(overlapping, len(with_genres), len(history), bool(item_genres))
            findings.append(Finding("novelty", not fresh))
        # A genre said of the item in a sentence about novelty ("a horror film that brings
        # something new to your list") is no claim about the user's taste.
        if _ABOUT_USER.search(plain) and not _NOVEL.search(plain):
            for genre in item_genres:
                if re.search(rf"(?<![\w]){re.escape(genre)}(?![\w])", plain, re.IGNORECASE):
                    count = sum(1 for p in with_genres if genre in _genres(p))
                    backed = genre_level(count, len(with_genres))
                    false = backed == "none" or (strong and backed != "strong")
                    findings.append(Finding("shared_genre", false))
        if _SEVERAL.search(plain):
            findings.append(Finding("several_films", len(films) < 2))
    return findings


def _decade_of(match: re.Match[str], item_decade: int | None) -> int | None:
    if match.group(1) is not None:
        return int(match.group(1) + match.group(2) + "0")
    if item_decade is None:
        return None
    # "'80s": the century of the item's own decade.
    return item_decade - item_decade % 100 + int(match.group(3)) * 10
