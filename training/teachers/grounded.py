"""The built-in grounded teacher: faithful, varied explanations from the request alone.

It stands in for the Oracle where no large model is available (the default offline build).
It reads the request's structure, not the prompt: the evidence the student sees
(`explain.input_format.window_evidence`: the same history window, with the claim rules of
`explain.claims`) and the user's preferred aspect and phrasing style. It writes only what
the rules support: a pattern's facts must hold for the request, intensity wording needs
strong support, and with no aspect supported it names the history as context, or says the
item is a departure when it is one. Every title, genre and decade comes from the request.

Besides the natural text, it reports each answer's slot template (`last_templates`), which
distillation uses as the training target as it is, instead of delexicalising the text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from explain import slots
from explain.evidence import Evidence
from explain.input_format import InputConfig, window_evidence
from explain.items import Item
from explain.rendering import fill_slots
from training.aspects import Aspect
from training.data.types import Sample, UserProfile
from training.teachers import patterns
from training.teachers.base import TeacherRequest, TeacherResult

GROUNDED_VERSION = 2
Kind = Literal["genre", "era", "similar", "context", "novel", "cold"]

# When the preferred aspect has no support, try the others in this fixed order.
FALLBACK: Mapping[Aspect, tuple[Aspect, ...]] = {
    "genre": ("genre", "similar", "era"),
    "era": ("era", "genre", "similar"),
    "similar": ("similar", "genre", "era"),
}
# Breaks ties between equally strong aspects for an unknown user.
PRIORITY: tuple[Aspect, ...] = ("genre", "similar", "era")
# History entries the teacher may name as context: the newest, which every input lists.
CONTEXT_TITLES = 2


@dataclass(frozen=True)
class GroundedExplanation:
    text: str
    template: str  # the same answer with slot tokens: the student's target
    aspect: Aspect | None  # None: no aspect was supported (context, departure, cold start)
    pattern: str  # which patterns were used, e.g. "genre.3+genre.5" (for tests and audits)


def facts(evidence: Evidence, item: Item, recent_first: Sequence[Item]) -> frozenset[str]:
    """The facts of `training.teachers.patterns` that hold for this request."""
    tags = {"hist" if recent_first else "cold"}
    nameable = sum(1 for p in recent_first[:CONTEXT_TITLES] if p.nameable)
    tags |= {"h1"} if nameable >= 1 and recent_first[0].nameable else set()
    tags |= {"h2"} if nameable >= 2 else set()
    if evidence.item_only:
        tags.add("a1")
    if evidence.shared:
        tags.add("g")
    if len(evidence.shared) >= 2:
        tags.add("g2")
    if evidence.similar:
        tags.add("s1")
        first = evidence.similar_genres[0]
        if evidence.shared and evidence.shared[0].genre in first:
            tags.add("s1g1")
        if evidence.era != "none" and evidence.similar[0] in evidence.era_examples:
            tags.add("s1dec")
    if len(evidence.similar) >= 2:
        tags.add("s2")
    if evidence.era != "none":
        tags.add("era")
        tags |= {f"e{k + 1}" for k in range(len(evidence.era_examples))}
    if evidence.novelty:
        tags.add("novel")
    if item.year is not None:
        tags.add("year")
    return frozenset(tags)


def support(evidence: Evidence) -> dict[Aspect, float]:
    """Aspects with support, and the share of the history behind each."""
    out: dict[Aspect, float] = {}
    if evidence.shared and evidence.with_genres:
        out["genre"] = evidence.shared[0].count / evidence.with_genres
    if evidence.era != "none" and evidence.dated:
        out["era"] = evidence.decade_count / evidence.dated
    if evidence.similar and evidence.with_genres:
        out["similar"] = evidence.overlapping / evidence.with_genres
    return out


def choose_aspect(support: Mapping[Aspect, float], preferred: Aspect | None) -> Aspect | None:
    """The preferred aspect if it has support, else a fixed fallback; for an unknown user
    (`preferred` None) the aspect backed by the largest share of the history."""
    if preferred is not None:
        return next((a for a in FALLBACK[preferred] if a in support), None)
    if not support:
        return None
    return max(support, key=lambda a: (support[a], -PRIORITY.index(a)))


class _Chooser(Protocol):
    def pick(self, pool: Sequence[patterns.Pattern], part: int) -> int: ...
    def two(self) -> bool: ...
    def second(self) -> bool: ...


@dataclass
class _VoiceChooser:
    """A user's consistent style: the pattern is a function of the voice and of facts the
    student's input shows (how many genres are shared), so the wording is learnable."""

    voice: int
    shared: int

    def pick(self, pool: Sequence[patterns.Pattern], part: int) -> int:
        return (self.voice * (1 + part) + self.shared) % len(pool)

    def two(self) -> bool:
        return self.voice % 2 == 1

    def second(self) -> bool:
        return self.voice % 3 != 2


@dataclass
class _VisibleChooser:
    """No user style (an unknown user): a simple function of two numbers the input shows,
    the history's size and the item's decade (a lookup per value, which a student with the
    zero vector can learn), so that unknown users still get varied wording rather than one
    average sentence."""

    size: int
    decade: int  # the item's decade / 10, 0 when unknown

    def pick(self, pool: Sequence[patterns.Pattern], part: int) -> int:
        return (self.size if part == 0 else self.size + self.decade) % len(pool)

    def two(self) -> bool:
        return self.size % 3 == 0

    def second(self) -> bool:
        return self.decade % 5 < 2


def visible_chooser(evidence: Evidence) -> _VisibleChooser:
    decade = evidence.decade // 10 if evidence.decade is not None else 0
    return _VisibleChooser(evidence.history_size, decade)


@dataclass
class _RandomChooser:
    """Per sample, seeded: the teacher's own variety for requests outside both cases."""

    rng: random.Random

    def pick(self, pool: Sequence[patterns.Pattern], part: int) -> int:
        return self.rng.randrange(len(pool))

    def two(self) -> bool:
        return self.rng.random() < 0.35

    def second(self) -> bool:
        return self.rng.random() < 0.45


class GroundedTeacher:
    """Deterministic per sample. `seed` varies the choices of requests with no user style
    when `visible_choice` is off."""

    def __init__(
        self, *, seed: int = 0, input_config: InputConfig | None = None, visible_choice: bool = True
    ) -> None:
        self.seed = seed
        self.config = input_config or InputConfig()
        self.visible_choice = visible_choice
        self.last_aspects: list[Aspect | None] = []  # of the last `explain` call, in order
        self.last_templates: list[str] = []

    @property
    def name(self) -> str:
        return f"grounded/{GROUNDED_VERSION}" + (f"+seed{self.seed}" if self.seed else "")

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        details = [self.compose(r.sample, r.profile) for r in requests]
        self.last_aspects = [d.aspect for d in details]
        self.last_templates = [d.template for d in details]
        return [d.text for d in details]

    def compose(self, sample: Sample, profile: UserProfile | None) -> GroundedExplanation:
        cfg = self.config
        window, evidence = window_evidence(sample.history, sample.item, cfg)
        recent_first = tuple(window)
        tags = facts(evidence, sample.item, recent_first)
        aspect = choose_aspect(support(evidence), profile.aspect if profile else None)
        chooser: _Chooser
        if profile is not None and profile.voice is not None:
            chooser = _VoiceChooser(profile.voice, len(evidence.shared))
        elif self.visible_choice:
            chooser = visible_chooser(evidence)
        else:
            chooser = _RandomChooser(random.Random(f"{self.seed}\x1f{sample.sample_id}"))
        template, pattern = _template(evidence, tags, aspect, chooser)
        values = slots.slot_values(recent_first, sample.item, evidence, len(recent_first))
        return GroundedExplanation(_fill(template, values), template, aspect, pattern)


def _usable(
    pool: Sequence[patterns.Pattern], tags: frozenset[str], *, strong_ok: bool
) -> list[tuple[int, patterns.Pattern]]:
    return [(k, p) for k, p in enumerate(pool) if p.needs <= tags and (strong_ok or not p.strong)]


def _template(
    evidence: Evidence, tags: frozenset[str], aspect: Aspect | None, choose: _Chooser
) -> tuple[str, str]:
    if aspect is None:
        kind: Kind = "cold" if "cold" in tags else "novel" if "novel" in tags else "context"
        pool = {"cold": patterns.COLD, "novel": patterns.NOVEL, "context": patterns.CONTEXT}[kind]
        usable = _usable(pool, tags, strong_ok=False)
        if not usable:  # no nameable history: say only what is true of the item
            return "<item> was picked for you.", "plain"
        k, chosen = usable[choose.pick([p for _, p in usable], 0)]
        return chosen.text, f"{kind}.{k}"
    named: tuple[str, ...] = ()
    strong_ok = True
    if aspect == "genre":
        two = "g2" in tags and choose.two()
        named = slots.SHARED[: 2 if two else 1]
        strong_ok = all(g.level == "strong" for g in evidence.shared[: len(named)])
    elif aspect == "similar":
        named = slots.SIMILAR[: 2 if "s2" in tags and choose.two() else 1]
    elif aspect == "era":
        strong_ok = evidence.era == "strong"
    usable = _usable(patterns.MAIN[aspect], tags, strong_ok=strong_ok)
    k, main = usable[choose.pick([p for _, p in usable], 0)]
    text, pattern = main.text, f"{aspect}.{k}"
    # A second sentence that repeats three words of the first reads as a stutter ("is a
    # sci-fi film, like Alien. Like Alien, this one is a sci-fi film"): not offered.
    seconds = [
        (j, p)
        for j, p in _usable(patterns.SECOND[aspect], tags, strong_ok=strong_ok)
        if not _trigrams(p.text) & _trigrams(text)
    ]
    if seconds and choose.second():
        j, second = seconds[choose.pick([p for _, p in seconds], 1)]
        if second.text not in text:
            text += " " + second.text
            pattern += f"+{aspect}.{j}"
    joined = " and ".join(named)
    return text.replace("{genres}", joined).replace("{similar}", joined), pattern


_WORD = re.compile(r"<[a-z0-9]+>|\{[a-z]+\}|[\w']+")


def _trigrams(text: str) -> set[tuple[str, ...]]:
    text = text.replace("{genres}", slots.SHARED[0]).replace("{similar}", slots.SIMILAR[0])
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[k : k + 3]) for k in range(len(words) - 2)}


_TITLE_SLOTS = slots.TITLE_SLOTS


def _fill(template: str, values: Mapping[str, str]) -> str:
    """`fill_slots`, except that titles are put in after its sentence capitalisation.

    fill_slots capitalises the word after any "!", "?" or "." + space, including one that
    ends a title ("Mars Attacks! Is a strong choice"); the patterns never need a capital
    there, so titles go in as opaque markers first.
    """
    markers = {slot: f"\x00{k}\x00" for k, slot in enumerate(values) if slot in _TITLE_SLOTS}
    text = fill_slots(template, {**values, **markers}).text
    for slot, marker in markers.items():
        if values[slot][-1:] in (".", "!", "?"):
            # A title that ends a sentence with its own "!" or "." needs no second stop.
            text = text.replace(marker + ".", marker)
        text = text.replace(marker, values[slot])
    return text
