"""Requests as sparse as the API accepts, so the student has seen them before serving them.

A catalogue gives every item its genres and year, but a ranker may send bare title strings
(`"Heat (1995)"`: the year survives in the title, the genres do not) or a new user with an
empty history. A student trained only on complete requests meets these for the first time in
production, and writes nonsense for them. So every `every`-th request of each split is
rewritten, alternately, as

- **bare**: the history items and the recommended item as titles only (no attributes);
- **cold start**: the same recommended item with an empty history.

The rewrite is deterministic (by position), replaces rather than adds (the build time and the
test set size stay the same), and reaches the test split too, so evaluation measures the
sparse requests alongside the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from explain.items import Item
from training.data.types import Sample

BARE, COLD_START = "bare", "cold_start"


def bare(item: Item) -> Item:
    """The item as a bare title string would arrive: title and id, no attributes."""
    return Item(item.title, item.item_id, {})


def sparse_variant(position: int, every: int) -> str | None:
    """Which rewrite the request at `position` gets (None: kept as it is)."""
    if every <= 0 or position % every != every - 1:
        return None
    return BARE if (position // every) % 2 == 0 else COLD_START


def sparse_requests(samples: Sequence[Sample], every: int) -> list[Sample]:
    """`samples` with every `every`-th one rewritten (see the module docstring); 0: none."""
    return [_rewrite(s, sparse_variant(k, every)) for k, s in enumerate(samples)]


def _rewrite(sample: Sample, variant: str | None) -> Sample:
    if variant == BARE:
        return replace(
            sample, history=tuple(bare(h) for h in sample.history), item=bare(sample.item)
        )
    if variant == COLD_START:
        return replace(sample, history=())
    return sample
