"""What the request models are made of: ids, text, years, attributes and the bounded fields.

Every value the input format or the tokenizer reads is validated here, so that inference
never meets one it cannot handle: text must be valid Unicode (a lone surrogate cannot be
encoded), numbers finite and of bounded size, a year a whole number in a sane range, and
every string and list bounded. A value that fails gets a 422 naming its field.

`bounded_fields(limits)` builds the fields that `RequestLimits` (service/limits.py) bounds,
once for the static models and once per app for the models that `build_request_models` makes.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from service.limits import RequestLimits

MAX_ID_CHARS = 128
MAX_KEY_CHARS = 64  # an attribute's name
MAX_VALUE_CHARS = 500  # a string attribute value, or each string in a list
MAX_LIST_ITEMS = 64  # entries of a list-valued attribute (genres, categories, tags)
MAX_MAGNITUDE = 1e15  # numbers beyond this are not attribute values but mistakes
MIN_YEAR, MAX_YEAR = 1000, 2100


def _valid_unicode(value: str) -> str:
    # JSON may carry "\ud800": a lone surrogate, which no tokenizer (and no UTF-8) can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


# How the schema says "valid Unicode": no lone surrogate (a code point range in Python's and
# hypothesis' regex semantics, where a surrogate pair is one character).
UNICODE_TEXT = r"^[^\ud800-\udfff]*$"
# ... and at least one character that is not a space (titles and ids are stripped).
VISIBLE_TEXT = r"^[^\ud800-\udfff]*[^\s\ud800-\udfff][^\ud800-\udfff]*$"
Text = Annotated[str, AfterValidator(_valid_unicode)]


def _coerce_id(value: object) -> object:
    # Ids may be JSON integers; `True` is not an id even though it is an int in Python.
    if isinstance(value, bool):
        raise ValueError("an id must be a string or an integer")
    return str(value) if isinstance(value, int) else value


def _whole_number(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0 are both integers; "3", true and 3.5 are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


def _coerce_year(value: object) -> object:
    """A year as a number (1985, 1985.0) or four ASCII digits ("1985")."""
    if isinstance(value, str):
        text = value.strip()
        if not (len(text) == 4 and text.isascii() and text.isdigit()):
            raise ValueError("a year is a whole number such as 1985 (or the string '1985')")
        return int(text)
    try:
        return _whole_number(value)
    except ValueError:
        raise ValueError("a year is a whole number such as 1985 (or the string '1985')") from None


def _check_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"a string attribute is at most {MAX_VALUE_CHARS} characters")
        return _valid_unicode(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("numbers must be finite (not NaN or Infinity)")
        if abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"numbers must lie within +-{MAX_MAGNITUDE:.0e}")
        return value
    raise ValueError("an attribute is a string, number, boolean, null or a list of those")


def _check_attribute(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise ValueError(f"a list attribute has at most {MAX_LIST_ITEMS} entries")
        return tuple(_check_scalar(v) for v in value)
    return _check_scalar(value)


_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": VISIBLE_TEXT},
        {"type": "integer"},
    ]
}
_SCALAR_SCHEMA: list[dict[str, Any]] = [
    {"type": "string", "maxLength": MAX_VALUE_CHARS, "pattern": UNICODE_TEXT},
    {"type": "number", "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE},
    {"type": "boolean"},
    {"type": "null"},
]

# Metadata order matters: the BeforeValidator wraps the constraints to its left, so an
# integer becomes a string first and then is stripped and bounded like any string.
ExternalId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_valid_unicode),
    BeforeValidator(_coerce_id),
    WithJsonSchema(_ID_SCHEMA),
]
AttributeValue = Annotated[
    Any,
    AfterValidator(_check_attribute),
    WithJsonSchema(
        {
            "anyOf": [
                *_SCALAR_SCHEMA,
                {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": {"anyOf": _SCALAR_SCHEMA}},
            ]
        }
    ),
]
Year = Annotated[
    int,
    Field(ge=MIN_YEAR, le=MAX_YEAR),
    BeforeValidator(_coerce_year),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_YEAR, "maximum": MAX_YEAR},
                {"type": "string", "pattern": "^(1[0-9]{3}|20[0-9]{2}|2100)$"},
            ]
        }
    ),
]
Genre = Annotated[Text, StringConstraints(strip_whitespace=True, max_length=MAX_KEY_CHARS)]


def _genre_list(value: object) -> object:
    """One string ("Comedy|Sci-Fi", "Comedy, Sci-Fi") or a list: always a list."""
    if isinstance(value, str):
        return [part for part in value.replace(",", "|").split("|") if part.strip()]
    return value


Genres = Annotated[
    list[Genre],
    Field(max_length=MAX_LIST_ITEMS),
    BeforeValidator(_genre_list),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "maxItems": MAX_LIST_ITEMS,
                    "items": {
                        "type": "string",
                        "maxLength": MAX_KEY_CHARS,
                        "pattern": UNICODE_TEXT,
                    },
                },
                {
                    "type": "string",
                    "pattern": UNICODE_TEXT,
                    "description": 'Genres joined by "|" or ","',
                },
            ]
        }
    ),
]
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class Attributes(BaseModel):
    """An item's attributes. `year` and `genres` are read by the input format; any other
    key (`categories`, `tags`, `director`, `city`...) holds a string, number, boolean, null
    or a list of those."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[Annotated[Text, Field(max_length=MAX_KEY_CHARS)], AttributeValue]
    max_keys: ClassVar[int] = RequestLimits().max_attributes

    year: Year | None = Field(default=None, description="Release or founding year.")
    genres: Genres | None = Field(
        default=None,
        description='Genres or categories: a list, or one string ("Comedy|Sci-Fi").',
    )

    @model_validator(mode="after")
    def _not_too_many(self) -> Self:
        if len(self.as_mapping()) > self.max_keys:
            raise ValueError(f"an item has at most {self.max_keys} attributes")
        return self

    def as_mapping(self) -> dict[str, Any]:
        """The attributes that were given (unset `year`/`genres` left out)."""
        out: dict[str, Any] = dict(self.__pydantic_extra__ or {})
        for key in ("year", "genres"):
            value = getattr(self, key)
            if value is not None:
                out[key] = tuple(value) if isinstance(value, list) else value
        return out


def bounded_attributes(limits: RequestLimits) -> type[Attributes]:
    """`Attributes` with this app's `max_attributes`."""
    return type(
        "Attributes",
        (Attributes,),
        {
            "__module__": __name__,
            "__doc__": Attributes.__doc__,
            "max_keys": limits.max_attributes,
            "model_config": ConfigDict(json_schema_extra={"maxProperties": limits.max_attributes}),
        },
    )


# --- the limit-dependent fields, shared by the static and the bounded models ---------------


def bounded_fields(limits: RequestLimits) -> dict[str, Any]:
    """The fields (and, under `attributes_model`, the attributes model) that `limits` bound."""
    attributes = bounded_attributes(limits)
    return {
        "attributes_model": attributes,
        "title": Field(
            min_length=1,
            max_length=limits.max_title_chars,
            description="The item's title; surrounding whitespace is stripped.",
            examples=["Back to the Future (1985)"],
            json_schema_extra={"pattern": VISIBLE_TEXT},
        ),
        "attributes": Field(
            default_factory=attributes,
            description="Item attributes such as `genres` (a list) and `year`.",
            examples=[{"genres": ["Comedy", "Sci-Fi"], "year": 1985}],
        ),
        "max_new_tokens": Field(
            default=limits.default_max_new_tokens,
            ge=1,
            le=limits.max_new_tokens_limit,
            description="Most tokens to generate (an integer; 48.0 counts as 48).",
        ),
        "num_beams": Field(
            default=1,
            ge=1,
            le=limits.max_num_beams,
            description="Beam width; 1 is greedy (an integer; 2.0 counts as 2).",
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
            description="The slate: one explanation request per recommended item. Each entry "
            "is validated on its own (as an `ExplainRequest`): an invalid entry gets its own "
            "error in `results` and the rest are still explained.",
        ),
    }
