"""Automatic faithfulness and personalisation checks on filled explanations.

The paper measures faithfulness and personalisation with human raters; these are the parts a
program can check against the request itself:

- *title hallucination*: a catalogue title that is neither in the history nor the item;
- *history grounding*: the text cites a history title, a feature the item shares with the
  history, or the item's decade when a history item is from the same decade; counted over
  the requests that have a history (a cold start has nothing to ground in);
- *item mention*: the text names the recommended item;
- *attribute precision*: of the features (catalogue vocabulary), decades and years the text
  states, the share true of the item or of a history item (pooled over the corpus);
- *aspect match*: the explanation's aspect (`aspect_of` its template) is the user's preferred
  one, counted only where the request holds evidence for that aspect;
- *unfilled slots*: the template used a slot the request cannot fill.

Titles are masked before features and decades are read, so "True Romance" is not a claim
that a film is a romance, and "2001: A Space Odyssey" is not a claim about a year.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from explain import slots
from explain.evidence import Evidence, compute_evidence
from explain.items import Item, distinct_recent, rewatched
from explain.rendering import fill_slots
from explain.titles import display_title
from training.aspects import Aspect, aspect_of
from training.data.types import Sample, UserProfile
from training.delexicalise import delexicalise, title_variants
from training.faithfulness import TitleMatcher
from training.metrics import FeatureLexicon, feature_scores

# "1980s"; "'80s", "’80s" or "80s" (two digits: compared with the decade modulo 100); "1985".
_LONG_DECADE = re.compile(r"(?<![\w])((?:1\d|20)\d0)s(?![\w])")
_SHORT_DECADE = re.compile(r"(?<![\w])['\u2019]?(\d0)s(?![\w])")
_YEAR = re.compile(r"(?<![\w'\u2019])(1[89]\d\d|20\d\d)(?![\w])")
_PLACEHOLDER = Item("\x00")  # a history entry no text can mention


@dataclass(frozen=True)
class ExplanationExample:
    """One explanation to judge, with the request it answers."""

    history: tuple[Item, ...]  # chronological: oldest first
    item: Item
    text: str  # the filled explanation, as a user reads it
    template: str | None = None  # its slot template, when the system wrote one
    aspect: Aspect | None = None  # the user's preferred aspect; None without a profile
    unfilled: tuple[str, ...] | None = None  # `Filled.unfilled`, when the caller has it
    history_used: int | None = None  # history slots the model saw; None: all (at most 50)

    @classmethod
    def from_sample(
        cls,
        sample: Sample,
        text: str,
        *,
        template: str | None = None,
        profile: UserProfile | None = None,
        unfilled: tuple[str, ...] | None = None,
        history_used: int | None = None,
    ) -> ExplanationExample:
        aspect = profile.aspect if profile is not None else None
        return cls(sample.history, sample.item, text, template, aspect, unfilled, history_used)

    @property
    def recent_first(self) -> list[Item]:
        """The history the request's slots index: distinct films, most recent first, without
        the item's own watches (`explain.input_format.recent_window`)."""
        return distinct_recent(self.history, self.item, slots.MAX_HISTORY_SLOTS)


@dataclass(frozen=True)
class Judgement:
    """What the checks found in one explanation."""

    hallucinated: frozenset[str]  # catalogue titles outside the request
    grounded: bool
    mentions_item: bool
    claims: int  # features, decades and years stated
    true_claims: int  # of those, true of the item or a history item
    features: frozenset[str]  # features named (lower case, titles masked)
    masked_text: str  # the text with every recognised title blanked out
    aspect: Aspect | None  # the explanation's aspect
    aspect_eligible: bool  # a profile exists and the request has evidence for its aspect
    unfilled: bool


def has_evidence_for(aspect: Aspect, evidence: Evidence) -> bool:
    """Whether the request supports an explanation of `aspect` under the claim rules
    (`explain.claims`): a supported shared genre, a backed era, or a title similar in
    content."""
    if aspect == "genre":
        return bool(evidence.shared)
    if aspect == "era":
        return evidence.era != "none"
    return bool(evidence.similar)


def _mask(text: str, titles: Iterable[str]) -> str:
    # Same case rule as TitleMatcher: one-word titles are only titles with their capital.
    for title in sorted(set(titles), key=len, reverse=True):
        flags = re.IGNORECASE if len(title.split()) > 1 else 0
        text = re.sub(rf"(?<![\w]){re.escape(title)}(?![\w])", " ", text, flags=flags)
    return text


def _request_roles(example: ExplanationExample) -> dict[str, set[str]]:
    """Display forms (and short aliases) of the request's titles -> "item" and/or "history"."""
    roles: dict[str, set[str]] = {}
    for role, items in (("item", [example.item]), ("history", list(example.history))):
        for item in items:
            for variant, _ in title_variants(item):
                roles.setdefault(display_title(variant), set()).add(role)
    return roles


def _stated_eras(text: str) -> tuple[set[int], set[int], set[int]]:
    """Distinct long decades (1980), short decades (80) and years (1985) the text states."""
    longs = {int(m.group(1)) for m in _LONG_DECADE.finditer(text)}
    shorts = {int(m.group(1)) for m in _SHORT_DECADE.finditer(text)}
    years = {int(m.group(1)) for m in _YEAR.finditer(text)}
    return longs, shorts, years


def _template_of(example: ExplanationExample, evidence: Evidence) -> str:
    if example.template is not None:
        return example.template
    # A real teacher writes text only: its aspect is read from the delexicalised form.
    # delexicalise compiles a pattern per title; a title that is not even a substring of the
    # text cannot match, so such history items are swapped for a placeholder that keeps every
    # position (and so every slot name) unchanged, at a fraction of the cost.
    lowered = example.text.lower()
    recent_first = [
        past if any(v.lower() in lowered for v, _ in title_variants(past)) else _PLACEHOLDER
        for past in example.recent_first
    ]
    return delexicalise(example.text, recent_first, example.item, evidence, _history_used(example))


def _history_used(example: ExplanationExample) -> int:
    if example.history_used is not None:
        return example.history_used
    return min(len(example.history), slots.MAX_HISTORY_SLOTS)


def _has_unfilled(example: ExplanationExample, evidence: Evidence) -> bool:
    if example.unfilled is not None:
        return bool(example.unfilled)
    if example.template is None:
        return bool(slots.SLOT_PATTERN.search(example.text))  # a raw slot left in the text
    values = slots.slot_values(example.recent_first, example.item, evidence, _history_used(example))
    return bool(fill_slots(example.template, values).unfilled)


def judge(
    example: ExplanationExample,
    matcher: TitleMatcher,
    lexicon: FeatureLexicon,
) -> Judgement:
    """Run every check on one explanation (see the module docstring for the rules)."""
    text, item, history = example.text, example.item, example.history
    hallucinated = matcher.hallucinated(text, [*history, item])
    # A hallucinated "Star Wars: Episode V" must not count as citing a history "Star Wars".
    text_ok = _mask(text, hallucinated)
    lowered = text_ok.lower()
    # Only titles that occur as substrings can match: compiling the rest is wasted time.
    roles = {n: r for n, r in _request_roles(example).items() if n.lower() in lowered}
    named = TitleMatcher(roles).mentions(text_ok) if roles else set()
    # TitleMatcher skips one-word titles under five letters in free text ("big", "up"); the
    # request's own short titles ("1917", "Heat") still count when written with their case.
    named |= {
        n
        for n in roles
        if len(n.split()) == 1
        and len(n) < 5
        and re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text_ok)
    }
    named_roles = set().union(*(roles.get(n, set()) for n in named))
    masked = _mask(text_ok, named | matcher.mentions(text_ok))

    features = lexicon.mentions(masked)
    item_features = {f.lower() for f in item.features}
    history_features = {f.lower() for past in history for f in past.features}
    longs, shorts, years = _stated_eras(masked)
    decades = {p.year // 10 * 10 for p in [item, *history] if p.year is not None}
    known_years = {p.year for p in [item, *history] if p.year is not None}
    true_claims = (
        len(features & (item_features | history_features))
        + sum(d in decades for d in longs)
        + sum(any(d == known % 100 for known in decades) for d in shorts)
        + sum(y in known_years for y in years)
    )

    evidence = compute_evidence(
        example.recent_first, item, rewatch=rewatched(example.history, item)
    )
    item_decade = item.year // 10 * 10 if item.year is not None else None
    history_decades = {p.year // 10 * 10 for p in history if p.year is not None}
    shares_decade = item_decade is not None and item_decade in history_decades
    says_decade = item_decade is not None and (item_decade in longs or item_decade % 100 in shorts)
    grounded = (
        "history" in named_roles
        or bool(features & item_features & history_features)
        or (shares_decade and says_decade)
    )

    aspect = aspect_of(_template_of(example, evidence))
    eligible = example.aspect is not None and has_evidence_for(example.aspect, evidence)
    return Judgement(
        hallucinated=frozenset(hallucinated),
        grounded=grounded,
        mentions_item="item" in named_roles,
        claims=len(features) + len(longs) + len(shorts) + len(years),
        true_claims=true_claims,
        features=frozenset(features),
        masked_text=masked,
        aspect=aspect,
        aspect_eligible=eligible,
        unfilled=_has_unfilled(example, evidence),
    )


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _macro(pairs: Sequence[tuple[ExplanationExample, Judgement]]) -> float | None:
    by_aspect: dict[Aspect, list[bool]] = {}
    for example, judged in pairs:
        if example.aspect is not None:
            by_aspect.setdefault(example.aspect, []).append(judged.aspect == example.aspect)
    rates = [sum(hits) / len(hits) for hits in by_aspect.values()]
    return sum(rates) / len(rates) if rates else None


def evaluate_explanations(
    examples: Sequence[ExplanationExample],
    matcher: TitleMatcher,
    *,
    features: Iterable[str] | None = None,
) -> dict[str, float | int | None]:
    """Corpus-level faithfulness, personalisation and PEPLER feature metrics.

    `features` is the catalogue's feature vocabulary (what counts as a feature word and the
    denominator of FCR); by default, the features of the examples' items and histories.
    A rate whose denominator is zero is None ("n/a" in the report), never a made-up 0.
    """
    if features is None:
        features = {f for e in examples for i in (e.item, *e.history) for f in i.features}
    lexicon = FeatureLexicon(features)
    judged = [judge(e, matcher, lexicon) for e in examples]
    n = len(judged)
    profiled = [(e, j) for e, j in zip(examples, judged, strict=True) if e.aspect is not None]
    eligible = [(e, j) for e, j in profiled if j.aspect_eligible]
    with_history = [j for e, j in zip(examples, judged, strict=True) if e.recent_first]
    claims = sum(j.claims for j in judged)

    scores: dict[str, float | int | None] = {
        "num_test_samples": n,
        "title_hallucination_rate": _rate(sum(bool(j.hallucinated) for j in judged), n),
        "hallucinated_titles": sum(len(j.hallucinated) for j in judged),
        "history_grounding_rate": _rate(sum(j.grounded for j in with_history), len(with_history)),
        "grounding_eligible": len(with_history),
        "item_mention_rate": _rate(sum(j.mentions_item for j in judged), n),
        "attribute_precision": _rate(sum(j.true_claims for j in judged), claims),
        "attribute_claims": claims,
        "aspect_match": _rate(sum(j.aspect == e.aspect for e, j in eligible), len(eligible)),
        "aspect_eligible": len(eligible),
        # Each preferred aspect weighs the same, whatever its share of the eligible requests:
        # a system that writes one aspect for everyone scores about 1/3, not that aspect's share.
        "aspect_match_macro": _macro(eligible),
        "aspect_profiles": len(profiled),
        "unfilled_slot_rate": _rate(sum(j.unfilled for j in judged), n),
    }
    if n:
        # Feature metrics on the title-masked text: "True Romance" is not a romance mention.
        scores.update(
            feature_scores(
                [j.masked_text for j in judged], [e.item.features for e in examples], lexicon
            )
        )
    else:
        scores.update({"fmr": None, "fcr": None, "div": None})
    return scores
