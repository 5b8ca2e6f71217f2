"""What the request models are made of: the id and attribute types, and the bounded fields.

`bounded_fields(limits)` builds the fields that `RequestLimits` (service/limits.py) bounds,
once for the static models and once per app for the models that `build_request_models` makes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from service.limits import RequestLimits

MAX_ID_CHARS = 128


def _coerce_id(value: object) -> object:
    # Ids may be JSON integers; `True` is not an id even though it is an int in Python.
    if isinstance(value, bool):
        raise ValueError("an id must be a string or an integer")
    return str(value) if isinstance(value, int) else value


_SCALAR_TYPES = (str, int, float, bool, type(None))


def _check_attribute(value: Any) -> Any:
    if isinstance(value, _SCALAR_TYPES):
        return value
    if isinstance(value, list) and all(isinstance(v, _SCALAR_TYPES) for v in value):
        return tuple(value)
    raise ValueError("an attribute is a string, number, boolean, null or a list of those")


_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
        {"type": "integer"},
    ]
}
_SCALAR_SCHEMA: list[dict[str, Any]] = [
    {"type": "string"},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
]

# Metadata order matters: the BeforeValidator wraps the constraints to its left, so an
# integer becomes a string first and then is stripped and bounded like any string.
ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS),
    BeforeValidator(_coerce_id),
    WithJsonSchema(_ID_SCHEMA),
]
AttributeValue = Annotated[
    Any,
    AfterValidator(_check_attribute),
    WithJsonSchema(
        {"anyOf": [*_SCALAR_SCHEMA, {"type": "array", "items": {"anyOf": _SCALAR_SCHEMA}}]}
    ),
]


# --- the limit-dependent fields, shared by the static and the bounded models ---------------


def bounded_fields(limits: RequestLimits) -> dict[str, Any]:
    return {
        "title": Field(
            min_length=1,
            max_length=limits.max_title_chars,
            description="The item's title; surrounding whitespace is stripped.",
            examples=["Back to the Future (1985)"],
        ),
        "attributes": Field(
            default_factory=dict,
            max_length=limits.max_attributes,
            description="Item attributes such as `genres` (a list) and `year`; values are "
            "JSON scalars or lists of scalars.",
            examples=[{"genres": ["Comedy", "Sci-Fi"], "year": 1985}],
        ),
        "max_new_tokens": Field(
            default=limits.default_max_new_tokens,
            ge=1,
            le=limits.max_new_tokens_limit,
            strict=True,
            description="Most tokens to generate.",
        ),
        "num_beams": Field(
            default=1,
            ge=1,
            le=limits.max_num_beams,
            strict=True,
            description="Beam width; 1 is greedy.",
        ),
        "history": Field(
            default_factory=list,
            max_length=limits.max_history,
            description="The items the user interacted with, oldest first. When the input "
            "budget is tight the oldest items are dropped first.",
        ),
        "recommended_item": Field(description="The item the ranker recommends."),
        "requests": Field(
            min_length=1,
            max_length=limits.max_slate_size,
            description="The slate: one explanation request per recommended item.",
        ),
    }
