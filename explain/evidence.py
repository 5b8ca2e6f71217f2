"""Evidence: what the request itself says links the recommended item to the history.

Computed from the request alone, identically in training and serving, with the support
rules of `explain.claims`: the item's genres the history shares and how strongly (only
supported ones are listed), the item's own genres the history lacks, the item's decade and
how strongly the history backs it, history items from that decade, the history items most
similar in content (sharing genres with the item), and whether the item is a departure.
The input format writes it into the student's input; the slots and the verifier read it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from explain.claims import Level, era_level, genre_level, novel
from explain.items import Item

MAX_SHARED = 3  # supported shared genres listed (<g1>..<g3>)
MAX_ITEM_ONLY = 3  # item genres the history lacks (<a1>..<a3>)
MAX_SIMILAR = 2  # history items similar in content (<s1>, <s2>)
MAX_ERA = 2  # history items from the item's decade (<e1>, <e2>)


def decade_forms(year: int) -> tuple[str, str]:
    decade = year - year % 10
    return f"{decade}s", f"'{decade % 100:02d}s"


@dataclass(frozen=True)
class GenreSupport:
    genre: str  # the item's feature, as the catalogue writes it
    count: int  # history items that have it
    level: Level


@dataclass(frozen=True)
class Evidence:
    history_size: int
    with_genres: int  # history items whose genres are known
    shared: tuple[GenreSupport, ...]  # supported genres, most frequent first
    item_only: tuple[str, ...]  # item genres no history item has
    decade: int | None  # the item's decade, e.g. 1980
    dated: int  # history items whose year is known
    decade_count: int  # of those, from the item's decade
    era: Level
    era_examples: tuple[int, ...]  # positions (0 = most recent) of history items from it
    similar: tuple[int, ...]  # positions of history items sharing genres, most overlap first
    similar_genres: tuple[tuple[str, ...], ...]  # the item genres each similar item shares
    overlapping: int  # history items sharing any of the item's genres
    novelty: bool  # the item brings genres the history lacks (or there is no history)

    @property
    def genre_level(self) -> Level:
        return self.shared[0].level if self.shared else "none"

    def share(self, count: int, total: int) -> str:
        return f"{count}/{total}"


def _genres(item: Item) -> set[str]:
    return {f.lower() for f in item.features}


def _decade(item: Item) -> int | None:
    return item.year - item.year % 10 if item.year is not None else None


def compute_evidence(
    recent_first: Sequence[Item], item: Item, *, rewatch: bool = False
) -> Evidence:
    """`rewatch`: the user has watched the item before (it is left out of `recent_first`,
    `explain.input_format.recent_window`), so it is not a departure whatever the rest says."""
    wanted = {f.lower(): f for f in item.features}
    with_genres = [p for p in recent_first if p.features]
    counts: Counter[str] = Counter()
    overlapping = 0
    for past in with_genres:
        hits = _genres(past) & set(wanted)
        counts.update(hits)
        overlapping += bool(hits)
    order = {f.lower(): k for k, f in enumerate(item.features)}
    ranked = sorted(counts, key=lambda f: (-counts[f], order[f]))
    supports = [
        GenreSupport(wanted[f], counts[f], genre_level(counts[f], len(with_genres))) for f in ranked
    ]
    shared = tuple(s for s in supports if s.level != "none")[:MAX_SHARED]
    item_only = tuple(f for f in item.features if f.lower() not in counts)[:MAX_ITEM_ONLY]

    decade = _decade(item)
    dated = [p for p in recent_first if p.year is not None]
    in_decade = [
        k for k, p in enumerate(recent_first) if decade is not None and _decade(p) == decade
    ]
    era = era_level(len(in_decade), len(dated)) if decade is not None else "none"
    era_examples = (
        tuple(k for k in in_decade if recent_first[k].nameable)[:MAX_ERA] if era != "none" else ()
    )

    scored: list[tuple[int, int, tuple[str, ...]]] = []  # (-overlap, position, shared genres)
    seen = {item.display_title.lower()}
    for position, past in enumerate(recent_first):
        title = past.display_title.lower()
        if title in seen or not past.nameable:
            continue
        seen.add(title)
        hits = _genres(past) & set(wanted)
        if hits:  # similar in content: at least one genre in common (decade alone is era)
            genres = tuple(wanted[f] for f in sorted(hits, key=order.__getitem__))
            scored.append((-len(hits), position, genres))
    scored.sort()
    similar = tuple(position for _, position, _ in scored[:MAX_SIMILAR])
    similar_genres = tuple(genres for _, _, genres in scored[:MAX_SIMILAR])
    return Evidence(
        history_size=len(recent_first),
        with_genres=len(with_genres),
        shared=shared,
        item_only=item_only,
        decade=decade,
        dated=len(dated),
        decade_count=len(in_decade),
        era=era,
        era_examples=era_examples,
        similar=similar,
        similar_genres=similar_genres,
        overlapping=overlapping,
        novelty=not rewatch
        and novel(overlapping, len(with_genres), len(recent_first), bool(item.features)),
    )


def similar_capable(recent_first: Sequence[Item], item: Item) -> frozenset[int]:
    """Positions of history items that share a genre with the item: the only ones a
    similarity claim may name."""
    wanted = {f.lower() for f in item.features}
    return frozenset(
        k for k, past in enumerate(recent_first) if wanted & {f.lower() for f in past.features}
    )
