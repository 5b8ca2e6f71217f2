"""Catalogue titles as people write them in a sentence: the one function training and serving use.

Real catalogues write titles for sorting and search, not for sentences:

    Shawshank Redemption, The (1994)              -> The Shawshank Redemption
    Seven Samurai (Shichinin no samurai) (1954)   -> Seven Samurai
    Amelie (Fabuleux destin d'Amélie Poulain, Le) -> Amelie
    City of Lost Children, The (Cité des enfants perdus, La) (1995)
                                                  -> The City of Lost Children
    Misérables, Les (1998)                        -> Les Misérables
    Seven (a.k.a. Se7en) (1995)                   -> Seven
    Lord of the Rings: The Two Towers, The (2002) -> The Lord of the Rings: The Two Towers

`display_title` drops the year and an alternate title in parentheses, and puts a trailing
article (in English, French, Italian, Spanish, German, Portuguese, Dutch, Swedish...) back in
front. `nameable` says whether a title can be named at all (`unknown`, `(no title)` cannot).
"""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")
# Control characters (C0, DEL, C1: a NUL or a terminal escape from a bad export) read as a
# space; invisible characters that only hide or reorder text (zero-width space, word joiner,
# byte-order mark, soft hyphen, bidirectional embeddings, overrides and isolates) are
# dropped. A sentence never carries them to the ranker's page or log.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u00ad\u200b\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
_YEAR_SUFFIX = re.compile(r"\s*\(\s*[0-9]{4}(?:\s*[-–]\s*[0-9]{0,4})?\s*\)\s*$")
# "Title, The" with the article last; "L'" and "l'" attach without a space.
ARTICLES = (
    "The", "A", "An",  # English
    "Les", "La", "Le", "L'", "Un", "Une",  # French
    "Il", "Lo", "Gli", "I", "Uno", "Una",  # Italian
    "El", "Los", "Las",  # Spanish
    "Das", "Der", "Die", "Ein", "Eine",  # German
    "O", "Os", "As",  # Portuguese
    "De", "Het", "Een",  # Dutch
    "Det", "Den", "En", "Ett",  # Scandinavian
)  # fmt: skip
_TRAILING_ARTICLE = re.compile(
    r"^(?P<body>.+?),\s*(?P<article>" + "|".join(re.escape(a) for a in ARTICLES) + r")$",
    re.IGNORECASE,
)
# The last parenthetical of a title: an alternate or original title, or "a.k.a. ...".
_LAST_PARENTHETICAL = re.compile(r"^(?P<body>.*\S)\s*\((?P<inner>[^()]+)\)$")
# A title that ends in a connector before its parenthetical needs it ("Birdman: Or (The
# Unexpected Virtue of Ignorance)"): the parenthetical is part of the title then.
_DANGLING = re.compile(r"(?:\b(?:or|and|of|the|a|an|to)|[:\-–,&])$", re.IGNORECASE)
UNNAMEABLE = frozenset({"unknown", "no title", "(no title)", "untitled", "n/a", "none", "-"})


def normalise(title: str) -> str:
    """Control characters as spaces, invisible ones dropped, whitespace collapsed and
    stripped."""
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", title))
    return _SPACES.sub(" ", text).strip()


def strip_year(title: str) -> str:
    return _YEAR_SUFFIX.sub("", normalise(title)).strip()


def _front_article(text: str) -> str:
    match = _TRAILING_ARTICLE.match(text)
    if match is None:
        return text
    article = match.group("article")
    # Keep the catalogue's own case ("L'" / "l'"), but a sentence-initial article is
    # capitalised: "Misérables, les" -> "Les Misérables".
    article = article[0].upper() + article[1:]
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{match.group('body').strip()}"


def display_title(title: str) -> str:
    """The title as a sentence writes it (see the module docstring); empty only when the
    title holds nothing visible (`nameable` is False then)."""
    text = strip_year(title)
    # Alternate titles: "(Shichinin no samurai)", "(a.k.a. Se7en)", "(Boat, The)"; a title
    # may carry two ("Léon: The Professional (a.k.a. The Professional) (Léon)"). Each trailing
    # parenthetical goes, unless the title needs it to make sense.
    for _ in range(3):
        match = _LAST_PARENTHETICAL.match(text)
        if match is None:
            break
        body = match.group("body").strip()
        if _DANGLING.search(body) and not _TRAILING_ARTICLE.match(body):
            break
        text = strip_year(body)
    text = _front_article(text)
    return text or normalise(title)


def nameable(title: str) -> bool:
    """False for placeholders a sentence must not name ("unknown", "(no title)")."""
    text = display_title(title).lower()
    return bool(text) and text not in UNNAMEABLE and any(ch.isalnum() for ch in text)


# In running text, a capitalised article right after a comma and before a lower-case word
# or punctuation is a catalogue title left inverted ("Shawshank Redemption, The offers").
_INVERTED_IN_TEXT = re.compile(
    r",\s(?:The|A|An|Les|La|Le|L'|Il|Lo|Gli|El|Los|Las|Das|Der|Die|Un|Une|Una|Uno|Het|Een)"
    r"(?=\s+[a-z]|\s*[.,;:!?()]|\s*$)"
)


def has_inverted_article(text: str) -> bool:
    """Whether running `text` still holds a catalogue-style ", The" (the verifier refuses it
    and evaluation counts it)."""
    return _INVERTED_IN_TEXT.search(text) is not None
