"""The project's own sample film catalogue (`films.json`): what the embedded default trains on.

Nothing can be downloaded where the default model is built, and the MovieLens licence
forbids shipping its files, so the project writes its own: several hundred well-known
films with their release year and genres in the MovieLens vocabulary, from general
knowledge. Titles use natural article order with a year suffix ("The Thing (1982)").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from explain.items import Item

# The MovieLens genre vocabulary (ml-1m and ml-100k, without ml-100k's "unknown").
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
CATALOG_FILE = "films.json"
FIRST_YEAR, LAST_YEAR = 1900, 2030  # outside these a year is a typo, not a film
_ID = re.compile(r"^f\d{3,}$")


class CatalogError(ValueError):
    """The catalogue file breaks one of its rules; the message names the entry."""


def validate_films(films: list[Any]) -> list[Item]:
    """Check every entry and turn it into an `Item`; raises `CatalogError` on the first fault.

    Rules: ids like "f001" and unique; titles unique, also as display titles (so "True
    Grit" cannot be two films a sentence could not tell apart) and ending in "(year)";
    a plausible year; one or more genres, all from `GENRES`, none twice.
    """
    items: list[Item] = []
    ids: set[str] = set()
    names: dict[str, str] = {}
    for position, film in enumerate(films, start=1):
        where = f"{CATALOG_FILE} entry {position}"
        if not isinstance(film, Mapping):
            raise CatalogError(f"{where}: not an object")
        film_id, title, year, genres = (film.get(k) for k in ("id", "title", "year", "genres"))
        if not isinstance(film_id, str) or not _ID.match(film_id):
            raise CatalogError(f"{where}: id {film_id!r} is not like 'f001'")
        if film_id in ids:
            raise CatalogError(f"{where}: duplicate id {film_id}")
        if not isinstance(year, int) or isinstance(year, bool):
            raise CatalogError(f"{where} ({film_id}): year {year!r} is not an integer")
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise CatalogError(f"{where} ({film_id}): implausible year {year}")
        if not isinstance(title, str) or not title.endswith(f" ({year})"):
            raise CatalogError(f"{where} ({film_id}): title {title!r} must end in ' ({year})'")
        if not isinstance(genres, list) or not genres:
            raise CatalogError(f"{where} ({film_id}): genres must be a non-empty list")
        unknown = [g for g in genres if g not in GENRES]
        if unknown or len(set(genres)) != len(genres):
            raise CatalogError(f"{where} ({film_id}): bad genres {genres} (unknown: {unknown})")
        item = Item(title, film_id, {"genres": list(genres), "year": year})
        for name in (title.lower(), item.display_title.lower()):
            if name in names:
                raise CatalogError(f"{where} ({film_id}): title {title!r} repeats {names[name]}")
            names[name] = film_id
        ids.add(film_id)
        items.append(item)
    return items


@cache
def _raw_catalog() -> tuple[dict[str, Any], ...]:
    text = resources.files("training.data").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    films = document.get("films") if isinstance(document, dict) else None
    if not isinstance(films, list):
        raise CatalogError(f"{CATALOG_FILE}: expected an object with a 'films' list")
    return tuple(films)


def alternate_titles() -> dict[str, str]:
    """Item id -> the original-language title, for the films that have one ("alt")."""
    return {
        str(film["id"]): str(film["alt"])
        for film in _raw_catalog()
        if isinstance(film.get("alt"), str) and film["alt"].strip()
    }


def load_catalog() -> dict[str, Item]:
    """The sample catalogue, validated, keyed by item id in file order ("f001" first).

    A fresh dict on every call (the parsed file is cached), so callers may modify theirs.
    """
    return {item.item_id or item.title: item for item in validate_films(list(_raw_catalog()))}


def decade_of(item: Item) -> int | None:
    return item.year - item.year % 10 if item.year is not None else None


def catalog_stats(catalog: Mapping[str, Item]) -> dict[str, dict[str, int]]:
    """Films per decade ("1980s") and per genre, for reports and the coverage test."""
    decades = Counter(f"{d}s" for d in map(decade_of, catalog.values()) if d is not None)
    genres = Counter(g for item in catalog.values() for g in item.features)
    return {
        "decades": dict(sorted(decades.items())),
        "genres": {g: genres[g] for g in GENRES},
    }
