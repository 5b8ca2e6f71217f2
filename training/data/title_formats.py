"""Titles and requests as real catalogues and rankers write them, built from our own catalogue.

The project's catalogue writes titles naturally ("The Thing (1982)"); real catalogues write
them for sorting ("Thing, The (1982)"), with the original title of a foreign film in
parentheses ("Seven Samurai (Shichinin no samurai) (1954)", "Amelie (Fabuleux destin
d'Amélie Poulain, Le) (2001)"), and rankers often send bare titles without genres. The
student is trained on these forms too, and the evaluation's messy-requests suite is built
from them, so neither meets a format for the first time in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from explain.items import Item
from explain.titles import ARTICLES

_YEAR = re.compile(r"\s*\(([0-9]{4})\)\s*$")
# A catalogue inverts English articles in its own titles ("Thing, The"; never "Hard, Die" or
# "Brother, Where Art Thou?, O") and the original language's in an alternate title
# ("Grande illusion, La").
ENGLISH = ("The", "A", "An")
ORIGINAL = tuple(a for a in ARTICLES if not a.endswith("'") and a not in ("I", "O"))


def _leading(articles: tuple[str, ...]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(a) for a in articles)
    return re.compile(rf"^(?P<article>{alternation})\s+(?P<body>.+)$")


_LEADING = {ENGLISH: _leading(ENGLISH), ORIGINAL: _leading(ORIGINAL)}


def sort_form(title: str, articles: tuple[str, ...] = ENGLISH) -> str:
    """ "The Thing" -> "Thing, The"; "L'Atalante" stays; a one-word title stays."""
    match = _LEADING[articles].match(title)
    if match is None or len(match.group("body")) < 2:
        return title
    body = match.group("body")
    return f"{body[0].upper()}{body[1:]}, {match.group('article')}"


def catalogue_title(item: Item, alternate: str | None = None) -> str:
    """The item's title as MovieLens-style catalogues write it."""
    match = _YEAR.search(item.title)
    body = _YEAR.sub("", item.title).strip()
    year = f" ({match.group(1)})" if match else ""
    alt = f" ({sort_form(alternate, ORIGINAL)})" if alternate else ""
    return f"{sort_form(body)}{alt}{year}"


def as_catalogue(item: Item, alternates: Mapping[str, str]) -> Item:
    """The same item under its catalogue-style title (attributes unchanged)."""
    title = catalogue_title(item, alternates.get(item.item_id or ""))
    return Item(title, item.item_id, item.attributes)


def bare(item: Item) -> Item:
    """The item as a bare title string would arrive: title and id, no attributes."""
    return Item(item.title, item.item_id, {})
