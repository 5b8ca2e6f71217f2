"""An independent grammar check of served explanations, for evaluation.

It shares no code with what writes or verifies the explanations (no slots, no templates, no
title function, no sentence inventory): it reads the text a user reads, with its own rules
for the failures seen on real catalogues. Each rule returns a reason; a text with any reason
is ungrammatical.

- `double_article`: "the The Devil's Advocate", "a an";
- `inverted_title`: a catalogue's ", The" left in a title ("Godfather, The offers...");
- `parenthesis`: an alternate title left in ("Return of Martin Guerre (Retour de...)");
- `placeholder`: a slot token left ("<s1>");
- `repeated_phrase`: the same three words twice ("belongs to the 1976, belongs to the");
- `repeated_word`: "the the", "your your";
- `dangling_word`: a sentence or clause ending in "the", "a", "of", "to"... ("the .");
- `article_agreement`: "a action film", "an comedy";
- `article_before_plural_decade`: "is a 1980s." (a decade plural needs a noun or "the");
- `capitalisation`: a sentence starting in lower case;
- `punctuation`: no final stop, or empty clauses (", ,", " .").
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable

_ARTICLES = ("the", "a", "an")
_INVERTED = re.compile(
    r"\b[\w'’.:!?-]+,\s(?:The|A|An|La|Le|Les|L'|Il|El|Los|Las|Das|Der|Die|Un|Une)\b(?=[\s.,;!?]|$)"
)
_DOUBLE_ARTICLE = re.compile(r"\b(?:the|a|an)\s+(?:the|a|an)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[a-z0-9]+>")
_WORDS = re.compile(r"[A-Za-zÀ-ÿ0-9'’-]+")
_DANGLING = re.compile(
    r"\b(?:the|a|an|of|to|with|from|and|or|for|in|by|your|like)\s*[.,;:!?]", re.IGNORECASE
)
_A_VOWEL = re.compile(r"\ba\s+(?:[aeioAEIO][a-z]|[aeio]\b)")
_AN_CONSONANT = re.compile(r"\ban\s+[b-df-gj-np-tv-zB-DF-GJ-NP-TV-Z][a-z]")
_PLURAL_DECADE = re.compile(r"\b(?:a|an)\s+(?:\d{4}s|['’]\d0s)\s*[.,;!?]", re.IGNORECASE)
_EMPTY_CLAUSE = re.compile(r"(?:,\s*,|\s[.,;!?](?!\w))")
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z\"'“‘])")
# Words that legitimately repeat ("had had", "that that") are rare in explanations: none.
_REPEAT_OK: frozenset[str] = frozenset()


_YEAR_END = re.compile(r"\s*\(\d{4}\)\s*$")
_PAREN_END = re.compile(r"\s*\([^()]*\)\s*$")
_ARTICLE_END = re.compile(
    r"^(.+), (The|A|An|La|Le|Les|L'|Il|El|Los|Las|Das|Der|Die|Un|Une|Lo|Gli|Una|Uno|Het)$",
    re.IGNORECASE,
)


def names_of(raw_title: str) -> str:
    """How a served text should name a catalogue title, by this module's own rules: no
    year, no trailing parenthetical (an alternate title), a trailing article put in front.
    Only this form is masked before the checks, so a title left inverted or with its
    alternate title in parentheses is still seen."""
    text = _YEAR_END.sub("", raw_title.strip())
    while _PAREN_END.search(text):
        text = _YEAR_END.sub("", _PAREN_END.sub("", text))
    inverted = _ARTICLE_END.match(text)
    if inverted:
        article = inverted.group(2)
        joiner = "" if article.endswith("'") else " "
        text = f"{article[0].upper()}{article[1:]}{joiner}{inverted.group(1)}"
    return text


def _masked(text: str, names: Iterable[str]) -> str:
    """Names (titles) replaced by neutral words, longest first, one word per name: their
    own punctuation ("E.T.", "Mars Attacks!", "or:") is not the sentence's."""
    ordered = sorted({n for n in names if n}, key=len, reverse=True)
    for k, name in enumerate(ordered):
        text = text.replace(name, f"Qname{k}")
    return text


def problems(text: str, names: Iterable[str] = ()) -> list[str]:
    """The reasons `text` is ungrammatical (empty when it reads as a sentence should).

    `names` are the titles the request holds, as they may appear in the text; the rules
    about the text's own words and punctuation skip them (the title checks do not)."""
    found: list[str] = []
    stripped = text.strip()
    if not stripped:
        return ["empty"]
    if _DOUBLE_ARTICLE.search(stripped):
        found.append("double_article")
    if _PLACEHOLDER.search(stripped):
        found.append("placeholder")
    ends = stripped[-1]  # a title may end the text with its own "!" or "?"
    stripped = _masked(stripped, names)
    if _INVERTED.search(stripped):
        found.append("inverted_title")
    if "(" in stripped or ")" in stripped:
        found.append("parenthesis")
    words = [w.lower().strip("'’") for w in _WORDS.findall(stripped)]
    grams = Counter(tuple(words[k : k + 3]) for k in range(len(words) - 2))
    if grams and grams.most_common(1)[0][1] > 1:
        found.append("repeated_phrase")
    if any(a == b and a not in _REPEAT_OK for a, b in itertools.pairwise(words)):
        found.append("repeated_word")
    if _DANGLING.search(stripped):
        found.append("dangling_word")
    if _A_VOWEL.search(stripped) or _AN_CONSONANT.search(stripped):
        found.append("article_agreement")
    if _PLURAL_DECADE.search(stripped):
        found.append("article_before_plural_decade")
    for sentence in _SENTENCES.split(stripped):
        first = sentence.lstrip("\"'“‘")[:1]
        if first.isalpha() and first.islower():
            found.append("capitalisation")
            break
    if ends not in ".!?\"'”’" or _EMPTY_CLAUSE.search(stripped):
        found.append("punctuation")
    return found


def is_grammatical(text: str, names: Iterable[str] = ()) -> bool:
    return not problems(text, names)
