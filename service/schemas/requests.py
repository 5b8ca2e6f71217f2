"""The request models (pydantic v2), and `build_request_models`, which bounds them per app.

The request limits are settings, so the bounded request models are built per app by
`build_request_models(limits)`: each is a subclass of the static model below with the
configured bounds, and carries the same name, so `/docs` shows the limits really in force.
The static models (bounded by `DEFAULT_LIMITS`) are what code and tests type against.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    create_model,
    field_validator,
    model_validator,
)

from explain.items import Item
from explain.types import ExplainJob
from service.limits import DEFAULT_LIMITS, RequestLimits
from service.schemas.fields import Attributes, ExternalId, Text, WholeNumber, bounded_fields

EXAMPLE_REQUEST: dict[str, Any] = {
    "user_id": "4217",
    "history": [
        "E.T. the Extra-Terrestrial (1982)",
        {
            "item_id": "260",
            "title": "Star Wars (1977)",
            "attributes": {"genres": ["Action", "Sci-Fi"]},
        },
    ],
    "recommended_item": {
        "item_id": "2011",
        "title": "Back to the Future (1985)",
        "attributes": {"genres": ["Comedy", "Sci-Fi"], "year": 1985},
    },
    "options": {"max_new_tokens": 48, "num_beams": 1},
}


_DEFAULT_FIELDS = bounded_fields(DEFAULT_LIMITS)
_OPTIONS_DESCRIPTION = "Generation options; absent or null means the defaults."


def _item_json_schema(schema: dict[str, Any]) -> None:
    # The model accepts a bare title too; say so in the OpenAPI schema.
    keys = ("type", "properties", "required", "additionalProperties")
    obj = {k: schema.pop(k) for k in keys if k in schema}
    title = {k: v for k, v in obj["properties"]["title"].items() if k != "title"}
    schema["anyOf"] = [title, obj]


class ItemIn(BaseModel):
    """An item: either its title alone or an object with a title."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_item_json_schema
    )

    item_id: ExternalId | None = Field(default=None, description="The catalogue id.")
    title: Text = _DEFAULT_FIELDS["title"]
    attributes: Attributes = _DEFAULT_FIELDS["attributes"]

    @model_validator(mode="before")
    @classmethod
    def _from_title(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"title": data}
        if isinstance(data, dict | ItemIn):
            return data
        raise ValueError("an item is a title string or an object with a `title`")

    def to_item(self) -> Item:
        return Item(
            title=self.title,
            item_id=self.item_id,
            attributes=MappingProxyType(self.attributes.as_mapping()),
        )


class ExplainOptions(BaseModel):
    """Generation options; unknown options are rejected."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: WholeNumber = _DEFAULT_FIELDS["max_new_tokens"]
    num_beams: WholeNumber = _DEFAULT_FIELDS["num_beams"]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    user_id: ExternalId = Field(
        description="The user, as a string or an integer (normalised to a string). An unknown "
        "user still gets a content-based explanation."
    )
    history: list[ItemIn] = _DEFAULT_FIELDS["history"]
    recommended_item: ItemIn = _DEFAULT_FIELDS["recommended_item"]
    options: ExplainOptions = Field(
        default_factory=ExplainOptions, description=_OPTIONS_DESCRIPTION
    )

    @field_validator("options", mode="before")
    @classmethod
    def _null_options(cls, value: Any) -> Any:
        return {} if value is None else value  # `"options": null` means the defaults

    def to_job(self) -> ExplainJob:
        return ExplainJob(
            user_id=self.user_id,
            history=tuple(item.to_item() for item in self.history),
            item=self.recommended_item.to_item(),
            max_new_tokens=self.options.max_new_tokens,
            num_beams=self.options.num_beams,
        )


def _slate_json_schema(schema: dict[str, Any]) -> None:
    # What the endpoint really accepts: any JSON value per entry; an `ExplainRequest` is
    # explained, anything else is answered with its own error in `results` (HTTP 200).
    requests = schema["properties"]["requests"]
    wanted = requests["items"]
    requests["items"] = {
        "anyOf": [
            wanted,
            {"description": "Any other value: answered with its own `error` in `results`."},
        ]
    }
    schema["examples"] = [{"requests": [EXAMPLE_REQUEST]}]


class BatchExplainRequest(BaseModel):
    """A slate. The list itself is validated here (a JSON array, 1 to `max_slate_size`
    entries); each entry is validated on its own by the endpoint, so one bad entry gets its
    own 422-style error in the results and the rest of the slate is still explained. The
    entries are therefore the raw JSON values until then, and the schema says so: each is
    an `ExplainRequest` or anything else (answered with an error)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_slate_json_schema)

    requests: list[SkipValidation[ExplainRequest]] = _DEFAULT_FIELDS["requests"]


@dataclass(frozen=True)
class RequestModels:
    """The request models bounded by one app's limits."""

    limits: RequestLimits
    item: type[ItemIn]
    options: type[ExplainOptions]
    explain: type[ExplainRequest]
    batch: type[BatchExplainRequest]


def build_request_models(limits: RequestLimits) -> RequestModels:
    f = bounded_fields(limits)
    item = create_model(
        "ItemIn",
        __base__=ItemIn,
        __module__=__name__,
        __doc__=ItemIn.__doc__,
        title=(Text, f["title"]),
        attributes=(f["attributes_model"], f["attributes"]),
    )
    options = create_model(
        "ExplainOptions",
        __base__=ExplainOptions,
        __module__=__name__,
        __doc__=ExplainOptions.__doc__,
        max_new_tokens=(WholeNumber, f["max_new_tokens"]),
        num_beams=(WholeNumber, f["num_beams"]),
    )
    # mypy cannot see runtime classes as types; the bounded ones subclass the static ones.
    explain = create_model(
        "ExplainRequest",
        __base__=ExplainRequest,
        __module__=__name__,
        history=(list[item], f["history"]),  # type: ignore[valid-type]
        recommended_item=(item, f["recommended_item"]),
        options=(
            options,
            Field(default_factory=options, description=_OPTIONS_DESCRIPTION),
        ),
    )
    batch = create_model(
        "BatchExplainRequest",
        __base__=BatchExplainRequest,
        __module__=__name__,
        requests=(list[SkipValidation[explain]], f["requests"]),  # type: ignore[valid-type]
    )
    return RequestModels(limits=limits, item=item, options=options, explain=explain, batch=batch)
