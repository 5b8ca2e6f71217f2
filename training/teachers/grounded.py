"""The built-in grounded teacher: faithful, varied explanations from the request alone.

It stands in for the Oracle where no large model is available (the default offline build).
It reads the request's structure, not the prompt: the item's metadata, the evidence the
student sees (`compute_evidence` on the same history window) and the user's preferred
aspect. Every title, genre and decade it writes comes from the request, because its
patterns are slot templates filled with the request's own slot values.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from explain import slots
from explain.evidence import Evidence, compute_evidence
from explain.input_format import InputConfig
from explain.items import Item
from explain.rendering import fill_slots
from training.aspects import Aspect
from training.data.types import Sample, UserProfile
from training.teachers import patterns
from training.teachers.base import TeacherRequest, TeacherResult

GROUNDED_VERSION = 1

# When the preferred aspect has no evidence, try the others in this fixed order.
FALLBACK: Mapping[Aspect, tuple[Aspect, ...]] = {
    "genre": ("genre", "similar", "era"),
    "era": ("era", "genre", "similar"),
    "similar": ("similar", "genre", "era"),
}
# Breaks ties between equally strong aspects for an unknown user.
PRIORITY: tuple[Aspect, ...] = ("genre", "similar", "era")


@dataclass(frozen=True)
class GroundedExplanation:
    text: str
    aspect: Aspect | None  # None: no evidence at all, the item is presented as a departure
    pattern: str  # which patterns were used, e.g. "genre.3+genre.5" (for tests and audits)


@dataclass(frozen=True)
class _Request:
    """One request's facts, computed once: the evidence and what each aspect can claim."""

    recent_first: tuple[Item, ...]
    evidence: Evidence
    genre_slots: tuple[str, ...]  # shared-genre slots with enough support, preferred first
    support: Mapping[Aspect, float]  # aspects with evidence -> share of history backing them
    tags: frozenset[str]


class GroundedTeacher:
    """Deterministic per sample: the RNG is seeded with `seed` and the sample id.

    `min_support`/`min_share`: a genre or decade counts as a pattern in the history only when
    at least that many history items (and that share of the history) have it; below that, a
    claim like "you keep coming back to sci-fi" would not be true.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        input_config: InputConfig | None = None,
        second_sentence_p: float = 0.45,
        two_p: float = 0.35,
        min_support: int = 2,
        min_share: float = 0.1,
    ) -> None:
        self.seed = seed
        self.config = input_config or InputConfig()
        self.second_sentence_p = second_sentence_p
        self.two_p = two_p
        self.min_support = min_support
        self.min_share = min_share
        self.last_aspects: list[Aspect | None] = []  # of the last `explain` call, in order

    @property
    def name(self) -> str:
        return f"grounded/{GROUNDED_VERSION}" + (f"+seed{self.seed}" if self.seed else "")

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        details = [self.compose(r.sample, r.profile) for r in requests]
        self.last_aspects = [d.aspect for d in details]
        return [d.text for d in details]

    def compose(self, sample: Sample, profile: UserProfile | None) -> GroundedExplanation:
        request = self._analyse(sample, profile)
        aspect = choose_aspect(request.support, profile.aspect if profile else None)
        chooser: _Chooser
        if profile is not None and profile.voice is not None:
            chooser = _VoiceChooser(profile.voice, len(request.evidence.shared))
        else:
            rng = random.Random(f"{self.seed}\x1f{sample.sample_id}")
            chooser = _RandomChooser(rng, self.two_p, self.second_sentence_p)
        template, pattern = self._template(request, aspect, chooser)
        values = slots.slot_values(
            request.recent_first, sample.item, request.evidence, len(request.recent_first)
        )
        return GroundedExplanation(_fill(template, values), aspect, pattern)

    def _analyse(self, sample: Sample, profile: UserProfile | None) -> _Request:
        cfg = self.config
        window = sample.history[-cfg.max_history :] if cfg.max_history else ()
        recent_first = tuple(reversed(window))
        ev = compute_evidence(
            recent_first, sample.item, max_shared=cfg.max_shared, max_similar=cfg.max_similar
        )
        n = max(ev.history_size, 1)

        def enough(count: int) -> bool:
            return count >= self.min_support and count / n >= self.min_share

        liked = {g.lower() for g in profile.genres} if profile else set()
        eligible = [
            (slot, feature, count)
            for slot, (feature, count) in zip(slots.SHARED, ev.shared, strict=False)
            if enough(count)
        ]
        # The user's own genres first: that is what their explanation should be about.
        eligible.sort(key=lambda e: e[1].lower() not in liked)
        # Each aspect's support is the share of the history that backs it: items with the
        # genre, items from the decade, items that match the item on all its genres. Only an
        # unknown user's aspect is chosen by it (see `choose_aspect`).
        support: dict[Aspect, float] = {}
        if eligible:
            support["genre"] = max(count for _, _, count in eligible) / n
        if ev.decade is not None and enough(ev.decade_count):
            support["era"] = ev.decade_count / n
        if ev.similar_by_content:  # a title similar by its decade alone is era evidence
            wanted = {f.lower() for f in sample.item.features}
            close = sum(1 for p in recent_first if wanted and wanted <= _features(p))
            support["similar"] = close / n

        tags = set()
        if recent_first:
            tags.add("hist")
        if ev.item_only:
            tags.add("a1")
        if eligible:
            tags.add("g")
        if ev.similar:
            tags.add("s1")
            first = recent_first[ev.similar[0]]
            if ev.shared and ev.shared[0][0].lower() in _features(first):
                tags.add("s1g1")
            same_decade = first.year is not None and first.year - first.year % 10 == ev.decade
            if ev.decade is not None and same_decade:
                tags.add("s1dec")
        return _Request(
            recent_first,
            ev,
            tuple(slot for slot, _, _ in eligible),
            support,
            frozenset(tags),
        )

    def _template(
        self, request: _Request, aspect: Aspect | None, choose: _Chooser
    ) -> tuple[str, str]:
        if aspect is None:
            main = choose.pattern(patterns.NO_EVIDENCE, request.tags, 0)
            return patterns.NO_EVIDENCE[main].text, f"none.{main}"
        named: tuple[str, ...] = ()
        if aspect == "genre":
            named = request.genre_slots[: 2 if choose.two() else 1]
        elif aspect == "similar":
            similar = slots.SIMILAR[: len(request.evidence.similar)]
            named = similar[: 2 if choose.two() else 1]
        tags = request.tags | {"one" if len(named) <= 1 else "two"}
        main = choose.pattern(patterns.MAIN[aspect], tags, 0)
        text = patterns.MAIN[aspect][main].text
        pattern = f"{aspect}.{main}"
        if choose.second():
            second = choose.pattern(patterns.SECOND[aspect], tags, 1)
            text += " " + patterns.SECOND[aspect][second].text
            pattern += f"+{aspect}.{second}"
        joined = " and ".join(named)
        text = text.replace("{genres}", joined).replace("{similar}", joined)
        return text, pattern


def choose_aspect(support: Mapping[Aspect, float], preferred: Aspect | None) -> Aspect | None:
    """The preferred aspect if it has evidence, else a fixed fallback; for an unknown user
    (`preferred` None) the aspect backed by the largest share of the history."""
    if preferred is not None:
        return next((a for a in FALLBACK[preferred] if a in support), None)
    if not support:
        return None
    return max(support, key=lambda a: (support[a], -PRIORITY.index(a)))


_TITLE_SLOTS = frozenset({slots.ITEM, *slots.SIMILAR, *slots.HISTORY})
_DOUBLE_STOP = re.compile(r"([.!?])\.(?=\s|$)")


def _fill(template: str, values: Mapping[str, str]) -> str:
    """`fill_slots`, except that titles are put in after its sentence capitalisation.

    fill_slots capitalises the word after any "!", "?" or "." + space, including one that
    ends a title ("Mars Attacks! Is a strong choice"); the patterns never need a capital
    there, so titles go in as opaque markers first.
    """
    markers = {slot: f"\x00{k}\x00" for k, slot in enumerate(values) if slot in _TITLE_SLOTS}
    text = fill_slots(template, {**values, **markers}).text
    for slot, marker in markers.items():
        text = text.replace(marker, values[slot])
    # A title that ends a sentence with its own "!" or "." needs no second full stop.
    return _DOUBLE_STOP.sub(r"\1", text)


def _features(item: Item) -> set[str]:
    return {f.lower() for f in item.features}


def _usable(pool: Sequence[patterns.Pattern], tags: frozenset[str]) -> list[int]:
    return [k for k, p in enumerate(pool) if p.needs <= tags]


class _Chooser(Protocol):
    def pattern(self, pool: Sequence[patterns.Pattern], tags: frozenset[str], part: int) -> int: ...
    def two(self) -> bool: ...
    def second(self) -> bool: ...


@dataclass
class _RandomChooser:
    """No known style (an unknown user): a per-sample seeded draw."""

    rng: random.Random
    two_p: float
    second_p: float

    def pattern(self, pool: Sequence[patterns.Pattern], tags: frozenset[str], part: int) -> int:
        return self.rng.choice(_usable(pool, tags))

    def two(self) -> bool:
        return self.rng.random() < self.two_p

    def second(self) -> bool:
        return self.rng.random() < self.second_p


@dataclass
class _VoiceChooser:
    """A user's consistent style: the pattern is a function of the voice and of facts the
    student's input shows (how many genres are shared), so the wording is learnable."""

    voice: int
    shared: int

    def pattern(self, pool: Sequence[patterns.Pattern], tags: frozenset[str], part: int) -> int:
        usable = _usable(pool, tags)
        return usable[(self.voice * (1 + part) + self.shared) % len(usable)]

    def two(self) -> bool:
        return self.voice % 2 == 1

    def second(self) -> bool:
        return self.voice % 3 != 2
