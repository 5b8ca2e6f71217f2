"""Rendering a model's slot template as the answer: slots filled, or the evidence sentence.

`fill_slots` puts the request's words into a template and fixes "a"/"an" and sentence
capitals around them. `render` is what the service answers: the filled template, or, when
the template is unusable (`explain.checks`), a fixed evidence sentence filled from the same
request, flagged with the defect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from explain.checks import NO_WORDS, template_defect
from explain.slots import SLOT_PATTERN


@dataclass(frozen=True)
class Filled:
    text: str  # what is served
    unfilled: tuple[str, ...]  # slots the model wrote that this request cannot fill
    defect: str | None = None  # why the template was unusable (`explain.checks`)
    model_text: str = ""  # the model's template filled, served or not (evaluation scores it)

    @property
    def fallback(self) -> bool:
        """The template was unusable: the text served is the evidence sentence."""
        return self.defect is not None


_ARTICLE_BEFORE_SLOT = re.compile(r"\b([Aa])n? (?=(<[a-z0-9]+>))")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")
_REPEATED_SLOT = re.compile(r"(<[a-z0-9]+>)(?:\s+(?:and|or|&)\s+\1)+")


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
    # "<g1> and <g1>": the model reached for a second slot the request lacks (it is banned)
    # and repeated the first; say it once.
    text = _REPEATED_SLOT.sub(r"\1", template.strip())
    text = _ARTICLE_BEFORE_SLOT.sub(article, text)
    text = _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)
    unfilled: list[str] = []

    def replace(match: re.Match[str]) -> str:
        slot = match.group(0)
        if slot not in values:
            unfilled.append(slot)
            return ""
        value = values[slot]
        before = text[: match.start()].rstrip()
        if value and (not before or before[-1] in ".!?"):
            value = value[0].upper() + value[1:]
        return value

    text = SLOT_PATTERN.sub(replace, text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return Filled(text, tuple(unfilled))


# When a model's template is unusable (no words, a slot begun and not written, a stutter or
# a loop: `explain.checks`), the service answers with the first of these whose slots the
# request can fill: still faithful, never empty. It is counted
# (`prism_fallback_explanations_total{reason}`) so that it cannot hide a broken model.
# `<g1>`, `<s1>` and `<dec>` exist only with a history; the one sentence that speaks of the
# history without them names `<h1>` as an extra need, so a cold start is never told what it
# watched.
EVIDENCE_SENTENCES: tuple[tuple[str, frozenset[str]], ...] = (
    ("<item> shares <g1> with <s1>, which you watched.", frozenset()),
    ("<item> is close to <s1>, which you watched.", frozenset()),
    ("<item> is a <g1> film, like others you have watched.", frozenset()),
    ("<item> comes from the <dec>, like others you have watched.", frozenset()),
    ("<item> was picked for you from what you have watched.", frozenset({"<h1>"})),
    ("<item> is a <a1> film.", frozenset()),
    ("<item> was picked for you.", frozenset()),
)


def render(template: str, values: Mapping[str, str]) -> Filled:
    """A model's template as the service answers it: filled, or, when it is unusable, the
    evidence sentence (flagged, with the defect). `model_text` keeps the model's own filled
    text either way: evaluation scores the model and counts how often the service steps in."""
    filled = fill_slots(template, values)
    defect = NO_WORDS if not any(ch.isalnum() for ch in filled.text) else template_defect(template)
    if defect is None:
        return Filled(filled.text, filled.unfilled, model_text=filled.text)
    served = fill_slots(evidence_sentence(values), values).text
    return Filled(served, filled.unfilled, defect=defect, model_text=filled.text)


def evidence_sentence(values: Mapping[str, str]) -> str:
    """The first evidence sentence whose slots (and history) `values` can all fill."""
    for sentence, extra in EVIDENCE_SENTENCES:
        if {*SLOT_PATTERN.findall(sentence), *extra} <= values.keys():
            return sentence
    return EVIDENCE_SENTENCES[-1][0]
