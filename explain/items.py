"""The catalogue item: what a ranker sends, what a dataset loader yields, what the format reads."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from explain.titles import display_title, nameable, normalise

# List-valued attributes that count as an item's *features* (MovieLens genres, Yelp
# categories, free-form tags). The first key present wins.
FEATURE_KEYS = ("genres", "categories", "tags")

_YEAR_SUFFIX = re.compile(r"\s*\(([0-9]{4})\)\s*$")
# A year outside this range is a typo or an attack, not a release year: treated as absent.
MIN_YEAR, MAX_YEAR = 1000, 2100


def _as_features(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = re.split(r"[|,]", value)
    elif isinstance(value, Sequence):
        parts = [str(v) for v in value if isinstance(v, str | int) and not isinstance(v, bool)]
    else:
        return ()
    seen: dict[str, str] = {}
    for part in parts:
        clean = normalise(part)
        if clean and clean.lower() not in seen:
            seen[clean.lower()] = clean
    return tuple(seen.values())


@dataclass(frozen=True)
class Item:
    """One catalogue item. `attributes` may hold `genres`/`categories` (lists) and `year`."""

    title: str
    item_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    # Cached: evidence and metrics read these many times per request. cached_property writes
    # the instance __dict__ directly, so it works on a frozen dataclass.
    @cached_property
    def year(self) -> int | None:
        """The `year` attribute, else a "(1985)" title suffix; None when neither is a sane
        year. Never raises: the service validates years, but other callers may not."""
        return _sane_year(self.attributes.get("year")) or _sane_year(
            match.group(1) if (match := _YEAR_SUFFIX.search(self.title)) else None
        )

    @cached_property
    def features(self) -> tuple[str, ...]:
        for key in FEATURE_KEYS:
            if key in self.attributes:
                return _as_features(self.attributes[key])
        return ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by distilled records and request files."""
        return {"item_id": self.item_id, "title": self.title, "attributes": dict(self.attributes)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Item:
        item_id = raw.get("item_id")
        return cls(
            str(raw["title"]),
            None if item_id is None else str(item_id),
            dict(raw.get("attributes") or {}),
        )

    @cached_property
    def display_title(self) -> str:
        """The title as a sentence writes it (`explain.titles.display_title`)."""
        return display_title(self.title)

    @cached_property
    def nameable(self) -> bool:
        """False for placeholder titles ("unknown"): a sentence never names those."""
        return nameable(self.title)


def same_item(a: Item, b: Item) -> bool:
    """Whether `a` and `b` are one catalogue item: the same `item_id` when both have one;
    otherwise the same title as a sentence writes it ("Godfather, The (1972)" is "The
    Godfather (1972)"), with the same year unless one of them has none. Placeholder titles
    ("unknown") say nothing about identity."""
    if a.item_id is not None and b.item_id is not None:
        return a.item_id == b.item_id
    if not (a.nameable and b.nameable):
        return False
    if a.display_title.casefold() != b.display_title.casefold():
        return False
    return a.year is None or b.year is None or a.year == b.year


def rewatched(history: Sequence[Item], item: Item) -> bool:
    """Whether the history already holds the recommended item (then it is not new)."""
    return any(same_item(past, item) for past in history)


def distinct_recent(
    history: Sequence[Item], item: Item | None = None, limit: int | None = None
) -> list[Item]:
    """`history` (chronological) most recent first, each film once, at its latest watch, and
    without `item`'s own watches; at most `limit` films. A play log repeats films, and
    "films from the 1980s, like others you have watched" means two films, not one twice."""
    out: list[Item] = []
    for past in reversed(history):
        if limit is not None and len(out) >= limit:
            break
        if item is not None and same_item(past, item):
            continue
        if not any(same_item(past, kept) for kept in out):
            out.append(past)
    return out


def _sane_year(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        raw = int(raw) if math.isfinite(raw) and raw.is_integer() else None
    elif isinstance(raw, str):
        text = raw.strip()
        raw = int(text) if len(text) == 4 and text.isascii() and text.isdigit() else None
    if isinstance(raw, int) and MIN_YEAR <= raw <= MAX_YEAR:
        return raw
    return None
