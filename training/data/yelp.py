"""The Yelp Open Dataset: businesses as items, reviews as interactions.

Both files are JSON lines (one object per line) and large (review.json is ~5 GB), so they
are streamed; a line that is not valid UTF-8 JSON, or lacks a field, is skipped and
recorded with file and line. The dataset cannot be downloaded automatically (its terms
must be accepted first): see `training.data.download`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from explain.items import Item
from training.data.sequences import build_dataset
from training.data.types import Dataset, Interaction, SkipLog

logger = logging.getLogger(__name__)

BUSINESS_FILES = ("business.json", "yelp_academic_dataset_business.json")
REVIEW_FILES = ("review.json", "yelp_academic_dataset_review.json")


def find_file(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"none of {', '.join(names)} in {directory}")


def _objects(path: Path, skipped: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                # json.loads takes the bytes: bad UTF-8 and bad JSON both raise ValueError.
                obj = json.loads(raw)
            except ValueError as error:
                skipped.skip(path.name, number, f"not a JSON object ({error})")
                continue
            if not isinstance(obj, dict):
                skipped.skip(path.name, number, "not a JSON object")
                continue
            yield number, obj


def _categories(value: Any) -> list[str] | None:
    """ "Mexican, Restaurants" -> ["Mexican", "Restaurants"]; null -> []; None if invalid."""
    if value is None:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(", ") if c.strip()]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return [c.strip() for c in value if c.strip()]  # older dumps wrote a list
    return None


def parse_date(value: Any) -> int | None:
    """ "2018-07-07 22:09:11" (UTC, as Yelp writes it) -> epoch seconds; None if invalid.

    Older dumps wrote a bare "2016-03-09"; that reads as midnight UTC.
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _business(obj: dict[str, Any]) -> Item | str:
    """The item, or why the line is malformed."""
    business_id, name = obj.get("business_id"), obj.get("name")
    if not isinstance(business_id, str) or not business_id:
        return "missing business_id"
    if not isinstance(name, str) or not name.strip():
        return "missing name"
    categories = _categories(obj.get("categories"))
    if categories is None:
        return "categories must be a string, a list or null"
    attributes: dict[str, Any] = {"categories": categories}
    # Absent values are left out rather than stored as None: the prompt prints attributes.
    if isinstance(obj.get("city"), str) and obj["city"].strip():
        attributes["city"] = obj["city"].strip()
    stars = obj.get("stars")
    if isinstance(stars, int | float) and not isinstance(stars, bool):
        attributes["stars"] = stars
    return Item(name.strip(), business_id, attributes)


def load_yelp(
    directory: str | Path, *, min_stars: float | None = None, max_reviews: int | None = None
) -> tuple[dict[str, Item], list[Interaction], SkipLog]:
    """Businesses and reviews as `(items, interactions, skiplog)`.

    `min_stars` keeps only reviews rated at least that much (the positive interactions);
    `max_reviews` stops after that many reviews were kept, for quick experiments.
    Reviews filtered out by `min_stars` are not malformed and are not recorded.
    """
    root = Path(directory)
    skipped = SkipLog()
    business_path = find_file(root, BUSINESS_FILES)
    review_path = find_file(root, REVIEW_FILES)
    items: dict[str, Item] = {}
    for line, obj in _objects(business_path, skipped):
        item = _business(obj)
        if isinstance(item, str):
            skipped.skip(business_path.name, line, item)
        elif item.item_id in items:
            skipped.skip(business_path.name, line, f"duplicate business_id {item.item_id}")
        else:
            assert item.item_id is not None
            items[item.item_id] = item

    interactions: list[Interaction] = []
    users: dict[str, str] = {}  # one shared string per user: Yelp has ~2M users
    review_file = review_path.name
    for line, obj in _objects(review_path, skipped):
        if max_reviews is not None and len(interactions) >= max_reviews:
            break
        user_id, business_id = obj.get("user_id"), obj.get("business_id")
        if not isinstance(user_id, str) or not user_id:
            skipped.skip(review_file, line, "missing user_id")
            continue
        if not isinstance(business_id, str) or business_id not in items:
            skipped.skip(review_file, line, f"unknown business_id {business_id!r}")
            continue
        timestamp = parse_date(obj.get("date"))
        if timestamp is None:
            skipped.skip(review_file, line, f"bad date {obj.get('date')!r}")
            continue
        if min_stars is not None:
            stars = obj.get("stars")
            if not isinstance(stars, int | float) or isinstance(stars, bool):
                skipped.skip(review_file, line, f"bad stars {stars!r}")
                continue
            if stars < min_stars:
                continue
        item_id = items[business_id].item_id
        assert item_id is not None
        interactions.append(Interaction(users.setdefault(user_id, user_id), item_id, timestamp))
    if len(skipped):
        logger.warning("%s: %s", root, skipped.summary())
    return items, interactions, skipped


def load_yelp_dataset(
    directory: str | Path,
    *,
    min_stars: float | None = None,
    max_reviews: int | None = None,
    max_history: int = 50,
) -> Dataset:
    items, interactions, skipped = load_yelp(
        directory, min_stars=min_stars, max_reviews=max_reviews
    )
    return build_dataset("yelp", items, interactions, max_history=max_history, skipped=skipped)
