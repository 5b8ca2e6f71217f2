"""MovieLens loaders: ml-1m (`::`), ml-100k (`u.item`/`u.data`) and the CSV releases.

The CSV format covers ml-latest-small, ml-25m and ml-32m. Files are streamed line by line
(ml-25m has 25M ratings) and decoded per line, so one bad byte costs one row, not the
file. Malformed rows are skipped and recorded with file and 1-based line number.
Titles are kept exactly as MovieLens writes them ("Matrix, The (1999)");
`Item.display_title` restores the article where a sentence needs it.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from explain.items import Item
from training.data.sequences import build_dataset
from training.data.types import Dataset, Interaction, SkipLog

logger = logging.getLogger(__name__)

Loaded = tuple[dict[str, Item], list[Interaction], SkipLog]

# The 19 genre flag columns of ml-100k `u.item`, in file order. "unknown" means no genre.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = frozenset({"", "(no genres listed)", "unknown"})
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_DATE_YEAR = re.compile(r"(\d{4})\s*$")  # ml-100k release dates: "01-Jan-1995"


def _lines(path: Path, encoding: str, skipped: SkipLog) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) for each non-blank line, decoded one line at a time."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as error:
                skipped.skip(path.name, number, f"undecodable bytes ({error.reason})")
                continue
            text = text.rstrip("\r\n")
            if number == 1:
                text = text.lstrip("\ufeff")
            if text.strip():  # a trailing empty line is no row
                yield number, text


def _movie(movie_id: int, title: str, genres: list[str], year: int | None) -> Item:
    attributes: dict[str, object] = {"genres": genres}
    if year is not None:
        attributes["year"] = year
    return Item(title, str(movie_id), attributes)


def _title_year(title: str) -> int | None:
    match = _TITLE_YEAR.search(title)
    return int(match.group(1)) if match else None


def _split_genres(field: str) -> list[str]:
    return [g.strip() for g in field.split("|") if g.strip() and g.strip() not in NO_GENRES]


def _add_movie(items: dict[str, Item], item: Item, file: str, line: int, log: SkipLog) -> None:
    assert item.item_id is not None
    if item.item_id in items:
        log.skip(file, line, f"duplicate movie id {item.item_id}")
    else:
        items[item.item_id] = item


class _Ratings:
    """Turns rating fields into interactions, sharing one id string per user and item.

    Sharing matters at ml-25m scale: 25M interactions would otherwise hold 50M small strings.
    """

    def __init__(self, items: dict[str, Item], skipped: SkipLog) -> None:
        self.items = items
        self.skipped = skipped
        self.users: dict[int, str] = {}
        self.movies: dict[int, str] = {int(k): k for k in items}
        self.out: list[Interaction] = []

    def add(self, fields: list[str], file: str, line: int) -> None:
        if len(fields) != 4:
            self.skipped.skip(file, line, f"expected 4 fields, found {len(fields)}")
            return
        try:
            user, movie, timestamp = int(fields[0]), int(fields[1]), int(fields[3])
            float(fields[2])
        except ValueError:
            self.skipped.skip(file, line, "non-numeric user id, movie id, rating or timestamp")
            return
        item_id = self.movies.get(movie)
        if item_id is None:
            self.skipped.skip(file, line, f"unknown movie id {movie}")
            return
        user_id = self.users.setdefault(user, str(user))
        self.out.append(Interaction(user_id, item_id, timestamp))


def _finish(directory: Path, items: dict[str, Item], ratings: _Ratings) -> Loaded:
    if len(ratings.skipped):
        logger.warning("%s: %s", directory, ratings.skipped.summary())
    return items, ratings.out, ratings.skipped


def _movie_row(
    fields: list[str], items: dict[str, Item], file: str, line: int, skipped: SkipLog
) -> None:
    """One `id, title, genres` row (ml-1m and the CSV releases), or one skipped line."""
    if len(fields) != 3:
        skipped.skip(file, line, f"expected 3 fields, found {len(fields)}")
        return
    try:
        movie_id = int(fields[0])
    except ValueError:
        skipped.skip(file, line, f"non-integer movie id {fields[0]!r}")
        return
    title = fields[1].strip()
    _add_movie(
        items,
        _movie(movie_id, title, _split_genres(fields[2]), _title_year(title)),
        file,
        line,
        skipped,
    )


def load_ml1m(directory: str | Path) -> Loaded:
    """`movies.dat` ("MovieID::Title::Genres") and `ratings.dat`, both latin-1."""
    root = Path(directory)
    skipped = SkipLog()
    items: dict[str, Item] = {}
    for line, text in _lines(root / "movies.dat", "latin-1", skipped):
        _movie_row(text.split("::"), items, "movies.dat", line, skipped)
    ratings = _Ratings(items, skipped)
    for line, text in _lines(root / "ratings.dat", "latin-1", skipped):
        ratings.add(text.split("::"), "ratings.dat", line)
    return _finish(root, items, ratings)


def load_ml100k(directory: str | Path) -> Loaded:
    """`u.item` (`|`-separated, 19 genre flags) and `u.data` (tab-separated), latin-1."""
    root = Path(directory)
    skipped = SkipLog()
    items: dict[str, Item] = {}
    width = 5 + len(ML100K_GENRES)
    for line, text in _lines(root / "u.item", "latin-1", skipped):
        fields = text.split("|")
        if len(fields) != width:
            skipped.skip("u.item", line, f"expected {width} fields, found {len(fields)}")
            continue
        flags = fields[5:]
        try:
            movie_id = int(fields[0])
        except ValueError:
            skipped.skip("u.item", line, f"non-integer movie id {fields[0]!r}")
            continue
        if any(flag not in ("0", "1") for flag in flags):
            skipped.skip("u.item", line, "genre flags must be 0 or 1")
            continue
        title = fields[1].strip()
        genres = [g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1"]
        # Some ml-100k titles carry no "(1995)"; the release date ("01-Jan-1995") still has it.
        date_year = _DATE_YEAR.search(fields[2])
        year = _title_year(title) or (int(date_year.group(1)) if date_year else None)
        item = _movie(movie_id, title, [g for g in genres if g not in NO_GENRES], year)
        _add_movie(items, item, "u.item", line, skipped)
    ratings = _Ratings(items, skipped)
    for line, text in _lines(root / "u.data", "latin-1", skipped):
        ratings.add(text.split("\t"), "u.data", line)
    return _finish(root, items, ratings)


def load_ml_csv(directory: str | Path) -> Loaded:
    """`movies.csv` (movieId,title,genres; CSV quoting) and `ratings.csv`, UTF-8."""
    root = Path(directory)
    skipped = SkipLog()
    items: dict[str, Item] = {}
    for line, text in _lines(root / "movies.csv", "utf-8", skipped):
        if line == 1 and text.strip() == "movieId,title,genres":
            continue
        try:
            # Per line, not one reader over the file: a broken quote then costs one row.
            fields = next(csv.reader([text], strict=True))
        except csv.Error as error:
            skipped.skip("movies.csv", line, f"bad CSV quoting ({error})")
            continue
        _movie_row(fields, items, "movies.csv", line, skipped)
    ratings = _Ratings(items, skipped)
    for line, text in _lines(root / "ratings.csv", "utf-8", skipped):
        if line == 1 and text.strip() == "userId,movieId,rating,timestamp":
            continue
        # Ratings are four numbers, never quoted: a plain split is ~10x faster than csv.
        ratings.add(text.split(","), "ratings.csv", line)
    return _finish(root, items, ratings)


# (name, files that identify the format, loader), tried in this order.
FORMATS = (
    ("ml-1m", ("movies.dat", "ratings.dat"), load_ml1m),
    ("ml-100k", ("u.item", "u.data"), load_ml100k),
    ("ml-csv", ("movies.csv", "ratings.csv"), load_ml_csv),
)


def detect_format(directory: str | Path) -> str:
    root = Path(directory)
    for name, files, _ in FORMATS:
        if all((root / f).is_file() for f in files):
            return name
    expected = "; ".join(" + ".join(files) for _, files, _ in FORMATS)
    raise FileNotFoundError(f"no MovieLens files in {root}: expected one of {expected}")


def load_movielens(directory: str | Path, *, max_history: int = 50) -> Dataset:
    """Any MovieLens release, detected from the files present, as chronological samples."""
    root = Path(directory)
    fmt = detect_format(root)
    loader = next(load for name, _, load in FORMATS if name == fmt)
    items, interactions, skipped = loader(root)
    # CSV releases share one format; the folder name ("ml-25m") tells them apart.
    name = root.name if fmt == "ml-csv" and root.name.startswith("ml-") else fmt
    return build_dataset(name, items, interactions, max_history=max_history, skipped=skipped)
