"""The "messy requests" suite: requests as real catalogues and rankers send them.

Built from the project's own catalogue (no licensed data ships) in the forms the default
model met in real traffic: titles in catalogue sort form with original titles in
parentheses ("Seven Samurai (Shichinin no samurai) (1954)", "Thing, The (1982)"), half of
the requests with genres and year and half as bare titles, histories of 1 to 50 films
spread over many decades and genres around a few favourites, now and then an `unknown`
title, and users the model has never seen (the zero vector, as for real users).
Deterministic in its seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from explain.items import Item
from explain.titles import strip_year
from explain.types import ExplainJob
from training.data.title_formats import as_catalogue, bare

UNKNOWN_TITLE = "unknown"


def _history_length(rng: random.Random) -> int:
    """1-50, with as many short histories as long ones."""
    return rng.randint(1, 8) if rng.random() < 0.45 else rng.randint(9, 50)


def messy_requests(
    catalogue: Mapping[str, Item],
    alternates: Mapping[str, str],
    *,
    count: int = 360,
    seed: int = 7,
) -> list[ExplainJob]:
    rng = random.Random(seed)
    items = [catalogue[k] for k in sorted(catalogue)]
    by_genre: dict[str, list[Item]] = {}
    for item in items:
        for genre in item.features:
            by_genre.setdefault(genre, []).append(item)
    genres = sorted(by_genre)
    jobs = []
    for k in range(count):
        favourites = rng.sample(genres, rng.randint(1, 3))
        liked = [i for g in favourites for i in by_genre[g]]
        history: list[Item] = []
        for _ in range(_history_length(rng)):
            pool = liked if rng.random() < 0.6 else items
            history.append(rng.choice(pool))
        # A film watched twice is listed once.
        history = list({id(h): h for h in history}.values())
        seen = {id(h) for h in history}
        candidates = [i for i in (liked if rng.random() < 0.7 else items) if id(i) not in seen]
        item = rng.choice(candidates or items)
        with_genres = k % 2 == 0

        def shown(film: Item, full: bool = with_genres) -> Item:
            written = as_catalogue(film, alternates)
            return written if full else bare(written)

        shown_history = [shown(h) for h in history]
        if len(shown_history) > 3 and rng.random() < 0.1:
            shown_history[rng.randrange(len(shown_history))] = Item(UNKNOWN_TITLE)
        jobs.append(ExplainJob(f"messy-{k:04d}", tuple(shown_history), shown(item)))
    return jobs


def describe(jobs: Sequence[ExplainJob]) -> dict[str, float | int]:
    """What the suite holds, for the report."""
    lengths = [len(j.history) for j in jobs]
    return {
        "requests": len(jobs),
        "with_genres": sum(1 for j in jobs if j.item.features),
        "history_min": min(lengths, default=0),
        "history_max": max(lengths, default=0),
        "history_mean": sum(lengths) / max(len(lengths), 1),
        "titles_changed_for_display": sum(
            1 for j in jobs for i in (*j.history, j.item) if i.display_title != strip_year(i.title)
        ),
    }
