"""The serving-time verifier: is this candidate a true, well-formed sentence for this request?

A candidate is served only if all of these hold, in this order (the first failure names it):

- `no_words`, `dangling_slot`, `stutter`, `looping`: the recognisable failures of a small
  student (`explain.checks`);
- `unfilled_slot`: every slot it writes is one the request can fill;
- `unknown_sentence`: every sentence is one the model's teacher wrote (its delexicalised form
  is in the sentence inventory the model ships with): a recombination of fragments ("belongs
  to the 1976, belongs to the Taxi Driver") is not;
- `unsupported_claim`: every claim it makes holds for this request under the rules of
  `explain.claims` (an intensity word needs strong support, "the same vein" a shared genre,
  "a fresh pick" a history that lacks the item's genres);
- `bad_title`: the filled text has no double article and no catalogue-style ", The".

When no candidate passes, the service answers with the evidence sentence: the first of a
fixed list whose claims the request supports, filled from the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explain import slots
from explain.checks import DEFECTS, NO_WORDS, template_defect
from explain.claims import SEVERAL_FILMS, ClaimUse, Level, claims_in, sentences
from explain.evidence import Evidence, decade_forms
from explain.items import Item
from explain.rendering import collapse_repeats, fill_slots
from explain.titles import has_inverted_article

UNFILLED, UNKNOWN_SENTENCE, UNSUPPORTED, BAD_TITLE = (
    "unfilled_slot",
    "unknown_sentence",
    "unsupported_claim",
    "bad_title",
)
# Every reason a candidate can be refused, in the order they are checked.
PROBLEMS = (*DEFECTS, UNFILLED, UNKNOWN_SENTENCE, UNSUPPORTED, BAD_TITLE)
SENTENCES_FILE = "sentences.json"  # the inventory, in the model directory
_DOUBLE_ARTICLE = re.compile(r"\b(the|a|an) (the|a|an)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_STRENGTH = {"none": 0, "basic": 1, "strong": 2}


def sentence_key(sentence: str) -> str:
    """A template sentence as the inventory holds it: case and spacing folded."""
    return _SPACES.sub(" ", sentence.strip()).lower()


def load_inventory(directory: Path) -> frozenset[str] | None:
    path = directory / SENTENCES_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return frozenset(sentence_key(s) for s in raw["sentences"])


def save_inventory(directory: Path, templates: Collection[str]) -> int:
    """Write the sentences of `templates` (the training targets) as the inventory."""
    keys = sorted({sentence_key(s) for t in templates for s in sentences(t)})
    payload = {"format": "prism-sentences", "version": 1, "sentences": keys}
    (directory / SENTENCES_FILE).write_text(json.dumps(payload, ensure_ascii=False, indent=0))
    return len(keys)


@dataclass(frozen=True)
class Verdict:
    problem: str | None  # None: servable
    claims: tuple[ClaimUse, ...]

    @property
    def ok(self) -> bool:
        return self.problem is None


def _position(slot: str, evidence: Evidence) -> int | None:
    body = slot[1:-1]
    if body.startswith("h"):
        return int(body[1:]) - 1
    if body.startswith("e"):
        k = int(body[1:]) - 1
        return evidence.era_examples[k] if k < len(evidence.era_examples) else None
    if body.startswith("s"):
        k = int(body[1:]) - 1
        return evidence.similar[k] if k < len(evidence.similar) else None
    return None


def supported(use: ClaimUse, evidence: Evidence, similar: frozenset[int]) -> bool:
    """Whether this request backs the claim (`explain.claims` rules)."""
    need = _STRENGTH[use.strength]
    if use.claim == "shared_genre":
        if not use.slots:
            return False  # intensity with nothing to intensify
        levels = {slot: g.level for slot, g in zip(slots.SHARED, evidence.shared, strict=False)}
        return all(_STRENGTH[levels.get(s, "none")] >= need for s in use.slots)
    if use.claim == "era":
        return _STRENGTH[evidence.era] >= need
    if use.claim == "similar_title":
        positions = [_position(s, evidence) for s in use.slots]
        return all(p is not None and p in similar for p in positions)
    if use.claim == "novelty":
        return evidence.novelty
    if use.claim == "history_reference" and use.strength == "strong":
        return evidence.history_size >= SEVERAL_FILMS  # "your recent watches"
    return True  # history references and item facts are true by construction


class Verifier:
    """`inventory`: the model's sentence inventory; None skips that check (a model published
    without one)."""

    def __init__(self, inventory: frozenset[str] | None) -> None:
        self.inventory = inventory

    def check(
        self,
        template: str,
        values: Mapping[str, str],
        evidence: Evidence,
        similar: frozenset[int],
    ) -> tuple[Verdict, str]:
        """The verdict on one candidate and its filled text."""
        filled = fill_slots(template, values)
        claims = tuple(claims_in(template))
        if not any(ch.isalnum() for ch in filled.text):
            return Verdict(NO_WORDS, claims), filled.text
        defect = template_defect(template)
        if defect is not None:
            return Verdict(defect, claims), filled.text
        if filled.unfilled:
            return Verdict(UNFILLED, claims), filled.text
        if self.inventory is not None and any(
            sentence_key(s) not in self.inventory for s in sentences(collapse_repeats(template))
        ):
            return Verdict(UNKNOWN_SENTENCE, claims), filled.text
        if not all(supported(c, evidence, similar) for c in claims):
            return Verdict(UNSUPPORTED, claims), filled.text
        if _DOUBLE_ARTICLE.search(filled.text) or has_inverted_article(filled.text):
            return Verdict(BAD_TITLE, claims), filled.text
        return Verdict(None, claims), filled.text


# The answer when no candidate passes: the first sentence whose claims this request supports
# (checked with the same rules), filled from the request. It is counted
# (`prism_fallback_explanations_total{reason}`) so that it cannot hide a broken model.
EVIDENCE_SENTENCES = (
    "<item> shares <g1> with <s1>, which you watched.",
    "<item> has much in common with <s1>, which you watched.",
    "<item> is a <g1> film, like others you have watched.",
    "<item> comes from the <dec>, like other films you have watched.",
    "<item> was picked for you with <h1> and your other recent watches in mind.",
    "<item> was picked for you with <h1> in mind.",
    "<item> is a <a1> film.",
    "<item> was picked for you.",
)


def evidence_sentence(
    values: Mapping[str, str], evidence: Evidence, similar: frozenset[int]
) -> str:
    """The first evidence sentence the request can fill and whose claims it supports."""
    for sentence in EVIDENCE_SENTENCES:
        if not set(slots.slots_in(sentence)) <= values.keys():
            continue
        if all(supported(c, evidence, similar) for c in claims_in(sentence)):
            return sentence
    return EVIDENCE_SENTENCES[-1]


def claim_evidence(
    claims: Sequence[ClaimUse], evidence: Evidence, recent_first: Sequence[Item], item: Item
) -> list[dict[str, Any]]:
    """What the served sentence relies on, for the response (a ranker's UI can show it):
    one entry per claim, each with the request facts its rule read."""
    out: list[dict[str, Any]] = []
    genre_of = dict(zip(slots.SHARED, evidence.shared, strict=False))
    for use in claims:
        if use.claim == "shared_genre":
            for slot in use.slots:
                g = genre_of[slot]
                having = [p.display_title for p in recent_first if g.genre.lower() in _lower(p)]
                out.append(
                    {
                        "claim": "shared_genre",
                        "genre": g.genre,
                        "share": f"{g.count}/{evidence.with_genres}",
                        "strength": g.level,
                        "history": having[:3],
                    }
                )
        elif use.claim == "era" and evidence.decade is not None:
            out.append(
                {
                    "claim": "era",
                    "decade": decade_forms(evidence.decade)[0],
                    "share": f"{evidence.decade_count}/{evidence.dated}",
                    "strength": evidence.era,
                    "history": [recent_first[k].display_title for k in evidence.era_examples],
                }
            )
        elif use.claim in ("similar_title", "history_reference"):
            titles = []
            for slot in use.slots:
                position = _position(slot, evidence)
                if position is not None and position < len(recent_first):
                    past = recent_first[position]
                    shared = [f for f in item.features if f.lower() in _lower(past)]
                    titles.append({"title": past.display_title, "shared_genres": shared})
            out.append({"claim": use.claim, "titles": titles})
        elif use.claim == "novelty":
            share = f"{evidence.overlapping}/{evidence.with_genres}"
            out.append({"claim": "novelty", "genres": list(item.features), "share": share})
        elif use.claim == "item_fact":
            out.append({"claim": "item_fact", "genres": list(item.features), "year": item.year})
    unique: dict[str, dict[str, Any]] = {}
    for entry in out:  # two sentences can rest on the same fact
        unique.setdefault(json.dumps(entry, sort_keys=True), entry)
    return list(unique.values())


def _lower(item: Item) -> set[str]:
    return {f.lower() for f in item.features}


def level_at_least(level: Level, wanted: Level) -> bool:
    return _STRENGTH[level] >= _STRENGTH[wanted]
