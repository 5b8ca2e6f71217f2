"""Delexicalised generation: evidence from the request, slot tokens, filling and delexicalising.

The student never writes a title, genre or decade itself. Its targets say `<item>`, `<g1>`,
`<dec>`, `<s1>`... and the service fills these from the request after decoding, so an
explanation can only name what the request contains. The evidence (shared features, the
item's decade and how much of the history shares it, the most similar history items) is
computed from the request alone, identically in training and serving.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model_store.items import Item
from model_store.quality import NO_WORDS, template_defect

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
# Other ways a teacher writes a feature; used only when delexicalising targets.
FEATURE_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "sci-fi": ("science fiction", "science-fiction", "scifi", "sci fi"),
    "film-noir": ("film noir", "noir"),
    "children's": ("children's", "kids'"),
}


def feature_surface(feature: str) -> str:
    return feature.lower() if feature.lower() in COMMON_NOUN_GENRES else feature


def decade_forms(year: int) -> tuple[str, str]:
    decade = year - year % 10
    return f"{decade}s", f"'{decade % 100:02d}s"


@dataclass(frozen=True)
class Evidence:
    """What the request itself says links the item to the history."""

    shared: tuple[tuple[str, int], ...]  # (item feature, history items that have it)
    item_only: tuple[str, ...]
    decade: int | None  # the item's decade, e.g. 1980
    decade_count: int  # history items from the same decade
    similar: tuple[int, ...]  # history positions (0 = most recent), most similar first
    history_size: int
    # Features the most similar history item shares with the item. 0 means it is similar by
    # its decade alone: era evidence, not grounds for "in the same vein as".
    similar_overlap: int = 0

    @property
    def similar_by_content(self) -> bool:
        return bool(self.similar) and self.similar_overlap > 0


def compute_evidence(
    recent_first: Sequence[Item], item: Item, *, max_shared: int = 3, max_similar: int = 2
) -> Evidence:
    item_features = item.features
    wanted = {f.lower(): f for f in item_features}
    counts: Counter[str] = Counter()
    for past in recent_first:
        for feature in {f.lower() for f in past.features}:
            if feature in wanted:
                counts[feature] += 1
    order = {f.lower(): k for k, f in enumerate(item_features)}
    ranked = sorted(counts, key=lambda f: (-counts[f], order[f]))[:max_shared]
    shared = tuple((wanted[f], counts[f]) for f in ranked)
    item_only = tuple(f for f in item_features if f.lower() not in counts)[: len(ITEM_ONLY)]

    decade = item.year - item.year % 10 if item.year is not None else None
    decade_count = 0
    if decade is not None:
        decade_count = sum(
            1 for p in recent_first if p.year is not None and p.year // 10 * 10 == decade
        )

    scored: list[tuple[float, int, int]] = []  # (score, position, shared features)
    seen_titles = {item.display_title.lower()}
    for position, past in enumerate(recent_first):
        title = past.display_title.lower()
        if title in seen_titles:
            continue
        seen_titles.add(title)
        overlap = len({f.lower() for f in past.features} & set(wanted))
        same_decade = (
            decade is not None and past.year is not None and past.year // 10 * 10 == decade
        )
        score = overlap + (0.5 if same_decade else 0.0)
        if score > 0:
            # Recency breaks ties: a recent similar item is the better reason.
            scored.append((score - position * 1e-3, position, overlap))
    scored.sort(reverse=True)
    similar = tuple(position for _, position, _ in scored[:max_similar])
    overlap_first = scored[0][2] if scored else 0
    return Evidence(
        shared, item_only, decade, decade_count, similar, len(recent_first), overlap_first
    )


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


@dataclass(frozen=True)
class Filled:
    text: str
    unfilled: tuple[str, ...]  # slots the model wrote that this request cannot fill
    defect: str | None = None  # why the template was unusable (`model_store.quality`)

    @property
    def fallback(self) -> bool:
        """The template was unusable: the text is the evidence sentence (or, in evaluation,
        the model's text, flagged)."""
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
# a loop: `model_store.quality`), the service answers with the first of these whose slots the
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


def render(template: str, values: Mapping[str, str], *, serve_fallback: bool = True) -> Filled:
    """A model's template as the service answers it: filled, or, when it is unusable, the
    evidence sentence (flagged, with the defect). `serve_fallback=False` keeps the model's
    text, flagged: evaluation scores the model and counts how often the service steps in."""
    filled = fill_slots(template, values)
    defect = NO_WORDS if not any(ch.isalnum() for ch in filled.text) else template_defect(template)
    if defect is None:
        return filled
    text = fill_slots(evidence_sentence(values), values).text if serve_fallback else filled.text
    return Filled(text, filled.unfilled, defect=defect)


def evidence_sentence(values: Mapping[str, str]) -> str:
    """The first evidence sentence whose slots (and history) `values` can all fill."""
    for sentence, extra in EVIDENCE_SENTENCES:
        if {*SLOT_PATTERN.findall(sentence), *extra} <= values.keys():
            return sentence
    return EVIDENCE_SENTENCES[-1][0]


def _surface_pattern(surface: str, *, case_sensitive: bool = False) -> re.Pattern[str]:
    # Word boundaries that also work for titles ending in punctuation ("E.T.", "Alien³").
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(r"(?<![\w])" + re.escape(surface) + r"(?![\w])", flags)


def title_variants(item: Item) -> tuple[tuple[str, int], ...]:
    """Ways a text may name the item, with a rank: 0 for the title, 1 for a short alias."""
    variants = {item.title.strip(): 0, item.display_title: 0}
    head = item.display_title.split(":")[0].strip()
    if head != item.display_title and len(head) >= 6:
        variants.setdefault(head, 1)
    return tuple(variants.items())


def delexicalise(
    text: str, recent_first: Sequence[Item], item: Item, evidence: Evidence, history_used: int
) -> str:
    """Turn a teacher's natural text into a slot template for this request.

    Longer mentions are replaced first, so "Star Wars: Episode V" wins over "Star Wars", and
    an item's own title wins over another item's short alias.
    A similar item is written as its `<sK>` slot rather than its `<hK>` position: the
    evidence slots are what the student learns to use.
    """
    mentions: list[tuple[str, str, int]] = [(v, ITEM, r) for v, r in title_variants(item)]
    similar_slot = {pos: slot for slot, pos in zip(SIMILAR, evidence.similar, strict=False)}
    for position in range(min(history_used, MAX_HISTORY_SLOTS)):
        slot = similar_slot.get(position, history_slot(position))
        mentions.extend((v, slot, r) for v, r in title_variants(recent_first[position]))
    for position, slot in similar_slot.items():
        if position >= history_used:
            mentions.extend((v, slot, r) for v, r in title_variants(recent_first[position]))
    for slots, features in (
        (SHARED, [f for f, _ in evidence.shared]),
        (ITEM_ONLY, list(evidence.item_only)),
    ):
        for slot, feature in zip(slots, features, strict=False):
            for surface in (feature, *FEATURE_SYNONYMS.get(feature.lower(), ())):
                mentions.append((surface, slot, 0))
    if item.year is not None:
        mentions.append((str(item.year), YEAR, 0))
        if evidence.decade_count > 0:  # as in `slot_values`: no shared decade, no decade slot
            long_form, short_form = decade_forms(item.year)
            mentions += [(long_form, DECADE, 0), (short_form, DECADE_SHORT, 0)]
            mentions.append((short_form[1:], DECADE_SHORT, 0))

    # Longest surface first, a full title before an alias of the same length; a span once
    # taken is never matched again.
    mentions.sort(key=lambda m: (-len(m[0]), m[2]))
    taken: list[tuple[int, int, str]] = []
    for surface, slot, _ in mentions:
        # One-word titles ("Up", "Her", "Big") only match with their capital: "grew up" is
        # not a mention of Up. Longer titles and features match in any case.
        one_word_title = slot not in FEATURE_SLOTS and len(surface.split()) == 1
        for match in _surface_pattern(surface, case_sensitive=one_word_title).finditer(text):
            start, end = match.span()
            if not any(start < t_end and t_start < end for t_start, t_end, _ in taken):
                taken.append((start, end, slot))
    out, cursor = [], 0
    for start, end, slot in sorted(taken):
        out.append(text[cursor:start])
        out.append(slot)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def slots_in(text: str) -> list[str]:
    return SLOT_PATTERN.findall(text)
