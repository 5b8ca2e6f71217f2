"""Finding catalogue titles in free text: the basis of the hallucination metrics.

A title counts as mentioned when its display form appears with word boundaries. Multi-word
titles match case-insensitively; one-word titles ("Alien", "Heat") only with their capital,
and one-word titles under five letters not at all, since "big" or "up" are ordinary words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from explain.items import Item
from explain.titles import display_title


def _alternation(titles: Iterable[str], flags: int) -> re.Pattern[str] | None:
    ordered = sorted(set(titles), key=len, reverse=True)
    if not ordered:
        return None
    body = "|".join(re.escape(t) for t in ordered)
    return re.compile(rf"(?<![\w])(?:{body})(?![\w])", flags)


class TitleMatcher:
    def __init__(self, catalogue: Iterable[Item | str]) -> None:
        names = {display_title(i.title if isinstance(i, Item) else i) for i in catalogue}
        self._canonical = {n.lower(): n for n in names}
        multi = [n for n in names if len(n.split()) > 1]
        single = [n for n in names if len(n.split()) == 1 and len(n) >= 5]
        self._multi = _alternation(multi, re.IGNORECASE)
        self._single = _alternation(single, 0)

    def mentions(self, text: str) -> set[str]:
        """Canonical display titles that `text` names, longest match first."""
        found: set[str] = set()
        spans: list[tuple[int, int]] = []
        for pattern in (self._multi, self._single):
            if pattern is None:
                continue
            for match in pattern.finditer(text):
                start, end = match.span()
                if any(start < e and s < end for s, e in spans):
                    continue  # inside a longer title already found
                spans.append((start, end))
                found.add(self._canonical[match.group(0).lower()])
        return found

    def hallucinated(self, text: str, allowed: Iterable[Item | str]) -> set[str]:
        """Titles named in `text` that are neither in `allowed` nor part of an allowed title."""
        allowed_names = [
            display_title(i.title if isinstance(i, Item) else i).lower() for i in allowed
        ]
        return {
            title
            for title in self.mentions(text)
            if not any(title.lower() == a or title.lower() in a for a in allowed_names)
        }
