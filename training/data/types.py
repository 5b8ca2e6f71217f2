"""Value objects every dataset produces, whatever its source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from explain.items import Item
from training.aspects import Aspect

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp: int


@dataclass(frozen=True)
class Sample:
    """One `(u, H_u, i_rec)`: `history` is chronological (oldest first, at most 50 items)."""

    user_id: str
    history: tuple[Item, ...]
    item: Item
    timestamp: int

    @property
    def sample_id(self) -> str:
        """Stable across runs: what resumable distillation deduplicates on."""
        key = f"{self.user_id}\x1f{self.item.item_id or self.item.title}\x1f{self.timestamp}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UserProfile:
    """A synthetic user's hidden tastes: what the teacher writes to and evaluation checks."""

    user_id: str
    genres: tuple[str, ...]
    decades: tuple[int, ...]
    aspect: Aspect
    voice: int | None = None  # a consistent phrasing style (0..VOICES-1); None: no preference


@dataclass(frozen=True)
class SkippedRow:
    file: str
    line: int
    reason: str


@dataclass
class SkipLog:
    """Malformed input rows: counted, with file and line, never dropped silently."""

    rows: list[SkippedRow] = field(default_factory=list)

    def skip(self, file: str, line: int, reason: str) -> None:
        self.rows.append(SkippedRow(file, line, reason))

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self, limit: int = 5) -> str:
        if not self.rows:
            return "no malformed rows"
        shown = "; ".join(f"{r.file}:{r.line}: {r.reason}" for r in self.rows[:limit])
        more = f" (+{len(self.rows) - limit} more)" if len(self.rows) > limit else ""
        return f"{len(self.rows)} malformed rows skipped: {shown}{more}"


@dataclass
class Dataset:
    name: str
    items: dict[str, Item]
    samples: dict[str, list[Sample]]  # keyed by SPLITS
    user_index: dict[str, int]  # built from train only; rows start at 1 (0 = unknown user)
    skipped: SkipLog = field(default_factory=SkipLog)
    profiles: dict[str, UserProfile] = field(default_factory=dict)  # synthetic data only
    # Item id -> an alternate (original-language) title, where the catalogue has one.
    alternates: dict[str, str] = field(default_factory=dict)
