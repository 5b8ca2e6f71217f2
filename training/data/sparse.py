"""Requests as rankers send them, so the student has seen each form before serving it.

A catalogue gives every item its genres and year, but a ranker may send bare title strings
(`"Heat (1995)"`: the year survives in the title, the genres do not), titles in the sort
form real catalogues use (`"Thing, The (1982)"`, `"Seven Samurai (Shichinin no samurai)
(1954)"`), or a new user with an empty history. A student trained only on complete,
naturally written requests meets these for the first time in production, and writes nonsense
for them. So requests are rewritten by position, deterministically, in every split (the
build time and the split sizes stay the same, and evaluation measures every form), out of
every eight:

| position | form | share |
|---|---|---|
| 0 | cold start: the same item, no history | 1/8 |
| 1 | bare titles, written naturally | 1/8 |
| 2, 3 | bare titles, in catalogue sort form | 2/8 |
| 4, 5 | catalogue sort form, with genres and year | 2/8 |
| 6, 7 | as the catalogue has it | 2/8 |

Half of the requests carry genres and half do not, as in the real traffic this was
measured against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from explain.items import Item
from training.data.title_formats import as_catalogue, bare
from training.data.types import Sample

COLD_START, BARE, BARE_CATALOGUE, CATALOGUE, NATURAL = (
    "cold_start",
    "bare",
    "bare_catalogue",
    "catalogue",
    "natural",
)
_FORMS = (COLD_START, BARE, BARE_CATALOGUE, BARE_CATALOGUE, CATALOGUE, CATALOGUE, NATURAL, NATURAL)

__all__ = ["BARE", "COLD_START", "bare", "request_form", "sparse_requests"]


def request_form(position: int, enabled: bool = True) -> str:
    """Which form the request at `position` takes."""
    return _FORMS[position % len(_FORMS)] if enabled else NATURAL


def sparse_requests(
    samples: Sequence[Sample], *, alternates: Mapping[str, str], enabled: bool = True
) -> list[Sample]:
    """`samples` rewritten into the forms of the module docstring (`enabled=False`: none)."""
    return [_rewrite(s, request_form(k, enabled), alternates) for k, s in enumerate(samples)]


def _rewrite(sample: Sample, form: str, alternates: Mapping[str, str]) -> Sample:
    if form == COLD_START:
        return replace(sample, history=())
    if form == NATURAL:
        return sample

    def convert(item: Item) -> Item:
        if form in (BARE_CATALOGUE, CATALOGUE):
            item = as_catalogue(item, alternates)
        return bare(item) if form in (BARE, BARE_CATALOGUE) else item

    return replace(sample, history=tuple(map(convert, sample.history)), item=convert(sample.item))
