"""Request bodies built from the project's own film catalogue, as a ranker would send them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from explain.items import Item


def catalogue_items() -> list[Item]:
    """Every catalogue film in a fixed order, so a seeded sample is the same on every run."""
    from training.data.catalog import load_catalog

    return sorted(load_catalog().values(), key=lambda i: i.item_id or "")


def request_body(chosen: Sequence[Item], user_id: str, **options: Any) -> dict[str, Any]:
    """`POST /v1/explanations` for the last of `chosen`, the others being the history."""
    body: dict[str, Any] = {
        "user_id": user_id,
        "history": [i.to_dict() for i in chosen[:-1]],
        "recommended_item": chosen[-1].to_dict(),
    }
    if options:
        body["options"] = options
    return body
