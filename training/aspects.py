"""The explanation aspects a synthetic user prefers, and how an explanation's aspect is read.

An explanation's aspect is read from its slot template: the first evidence slot it uses.
Genre slots (`<gK>`, `<aK>`) mean "genre", decade slots (`<dec>`, `<decs>`, `<year>`) mean
"era", title slots (`<sK>`, `<hK>`) mean "similar". `<item>` says nothing about the aspect.
"""

from __future__ import annotations

import re
from typing import Literal

Aspect = Literal["genre", "era", "similar"]
ASPECTS: tuple[Aspect, ...] = ("genre", "era", "similar")

_ASPECT_SLOT = re.compile(r"<(g\d|a\d|decs|dec|year|s\d|h\d{1,2})>")


def aspect_of_slot(slot_body: str) -> Aspect:
    if slot_body[0] in "ga":
        return "genre"
    if slot_body.startswith(("dec", "year")):
        return "era"
    return "similar"


def aspect_of(template: str) -> Aspect | None:
    """The aspect of a delexicalised explanation, or None when it uses no evidence slot."""
    match = _ASPECT_SLOT.search(template)
    return aspect_of_slot(match.group(1)) if match else None


def aspects_used(template: str) -> set[Aspect]:
    return {aspect_of_slot(m.group(1)) for m in _ASPECT_SLOT.finditer(template)}
