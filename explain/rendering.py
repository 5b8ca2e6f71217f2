"""Filling a model's slot template with the request's words.

`fill_slots` puts the request's words into a template and fixes what the words change
around them: "a"/"an" before a slot, an article the title already has ("the <s1>" with
"The Thing" is "The Thing", never "the The Thing"), and sentence capitals. Whether the
result may be served is the verifier's call (`explain.verifier`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from explain.slots import SLOT_PATTERN


@dataclass(frozen=True)
class Filled:
    text: str
    unfilled: tuple[str, ...]  # slots the template used that this request cannot fill


_ARTICLE_BEFORE_SLOT = re.compile(r"\b([Aa])n? (?=(<[a-z0-9]+>))")
# "the <s1>" / "a <h2>" before a title that brings its own article.
_ARTICLE_BEFORE_TITLE = re.compile(r"\b([Tt]he|[Aa]n?) (<(?:item|s\d|e\d|h\d{1,2})>)")
_OWN_ARTICLE = re.compile(r"^(?:the|a|an|les|la|le|l'|il|el|los|las|das|der|die)\b", re.I)
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")
_STOP_AFTER_SLOT = re.compile(r"(<[a-z0-9]+>)\.(?=\s|$)")
_REPEATED_SLOT = re.compile(r"(<[a-z0-9]+>)(?:\s+(?:and|or|&)\s+\1)+")


def collapse_repeats(template: str) -> str:
    """Say a repeated slot once: in "<g1> and <g1>" the model reached for a second slot the
    request lacks (it is banned) and repeated the first."""
    return _REPEATED_SLOT.sub(r"\1", template.strip())


def _needs_an(word: str) -> bool:
    w = word.lstrip("'\u2019\"").lower()
    return bool(w) and (w[0] in "aeiou" or w.startswith(("8", "11", "18")))


def fill_slots(template: str, values: Mapping[str, str]) -> Filled:
    """Replace slot tokens by their values; fix "a"/"an" before them and sentence capitals."""

    def article(match: re.Match[str]) -> str:
        value = values.get(match.group(2))
        if value is None:
            return match.group(0)
        a = match.group(1)
        return f"{a}n " if _needs_an(value) else f"{a} "

    # Sentence capitals are decided on the template, before titles with their own "." or "!"
    # ("E.T. the Extra-Terrestrial", "Mars Attacks!") are filled in.
    def own_article(match: re.Match[str]) -> str:
        value = values.get(match.group(2), "")
        if not _OWN_ARTICLE.match(value):
            return match.group(0)
        # The title's article replaces the template's, in the template's case.
        if match.group(1)[0].isupper():
            return match.group(2) + "\x00cap"
        return match.group(2)

    text = collapse_repeats(template)
    # A title that ends with its own "." or "!" takes the place of the sentence's full stop.
    text = _STOP_AFTER_SLOT.sub(
        lambda m: m.group(1) if values.get(m.group(1), "")[-1:] in (".", "!", "?") else m.group(0),
        text,
    )
    text = _ARTICLE_BEFORE_TITLE.sub(own_article, text)
    text = _ARTICLE_BEFORE_SLOT.sub(article, text)
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)
    unfilled: list[str] = []

    def replace(match: re.Match[str]) -> str:
        slot = match.group(0)
        if slot not in values:
            unfilled.append(slot)
            return ""
        value = values[slot]
        capital = text[match.end() : match.end() + 4] == "\x00cap"
        before = text[: match.start()].rstrip()
        if value and (capital or not before or before[-1] in ".!?"):
            value = value[0].upper() + value[1:]
        return value

    text = SLOT_PATTERN.sub(replace, text).replace("\x00cap", "")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return Filled(text, tuple(unfilled))
