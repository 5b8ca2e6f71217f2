"""Evidence: what the request itself says links the recommended item to the history.

Computed from the request alone, identically in training and serving: the item's features
the history shares (most frequent first), the features it does not share, the item's decade
and how many history items share it, and the history items most similar to it. The input
format writes it into the student's input; the slots and the claim rules read it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from explain.items import Item

MAX_ITEM_ONLY = 3  # features of the item the history lacks that get a slot (<a1>..<a3>)


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
    item_only = tuple(f for f in item_features if f.lower() not in counts)[:MAX_ITEM_ONLY]

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
