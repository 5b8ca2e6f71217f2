"""The HTTP API's schemas (pydantic v2), kept apart from the runtime's value objects.

The request limits are settings, so the bounded request models are built per app by
`build_request_models(limits)`: each is a subclass of the static model below with the
configured bounds, and carries the same name, so `/docs` shows the limits really in force.
The static models (bounded by `DEFAULT_LIMITS`) are what code and tests type against.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
    model_validator,
)

from model_store.items import Item
from service.runtime.engine import ExplainJob

MAX_ID_CHARS = 128


@dataclass(frozen=True)
class RequestLimits:
    """The configurable bounds of a request (the `PRISM_MAX_*` settings)."""

    max_history: int = 50
    max_title_chars: int = 300
    max_attributes: int = 32
    max_slate_size: int = 32
    max_new_tokens_limit: int = 96
    max_num_beams: int = 4
    default_max_new_tokens: int = 48


DEFAULT_LIMITS = RequestLimits()


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


# --- the limit-dependent fields, shared by the static and the bounded models ---------------


def _bounded_fields(limits: RequestLimits) -> dict[str, Any]:
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
        "options": Field(default=None, description="Generation options."),
        "requests": Field(
            min_length=1,
            max_length=limits.max_slate_size,
            description="The slate: one explanation request per recommended item.",
        ),
    }


_DEFAULT_FIELDS = _bounded_fields(DEFAULT_LIMITS)


def _item_json_schema(schema: dict[str, Any]) -> None:
    # The model accepts a bare title too; say so in the OpenAPI schema.
    keys = ("type", "properties", "required", "additionalProperties")
    obj = {k: schema.pop(k) for k in keys if k in schema}
    title = {k: v for k, v in obj["properties"]["title"].items() if k != "title"}
    schema["anyOf"] = [title, obj]


# --- requests -------------------------------------------------------------------------------


class ItemIn(BaseModel):
    """An item: either its title alone or an object with a title."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_item_json_schema
    )

    item_id: ExternalId | None = Field(default=None, description="The catalogue id.")
    title: str = _DEFAULT_FIELDS["title"]
    attributes: dict[str, AttributeValue] = _DEFAULT_FIELDS["attributes"]

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
            attributes=MappingProxyType(dict(self.attributes)),
        )


class ExplainOptions(BaseModel):
    """Generation options; unknown options are rejected."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = _DEFAULT_FIELDS["max_new_tokens"]
    num_beams: int = _DEFAULT_FIELDS["num_beams"]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_REQUEST]})

    user_id: ExternalId = Field(
        description="The user, as a string or an integer (normalised to a string). An unknown "
        "user still gets a content-based explanation."
    )
    history: list[ItemIn] = _DEFAULT_FIELDS["history"]
    recommended_item: ItemIn = _DEFAULT_FIELDS["recommended_item"]
    options: ExplainOptions | None = _DEFAULT_FIELDS["options"]

    def to_job(self, *, default_max_new_tokens: int) -> ExplainJob:
        options = self.options
        return ExplainJob(
            user_id=self.user_id,
            history=tuple(item.to_item() for item in self.history),
            item=self.recommended_item.to_item(),
            max_new_tokens=options.max_new_tokens if options else default_max_new_tokens,
            num_beams=options.num_beams if options else 1,
        )


class BatchExplainRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"requests": [EXAMPLE_REQUEST]}]}
    )

    requests: list[ExplainRequest] = _DEFAULT_FIELDS["requests"]


@dataclass(frozen=True)
class RequestModels:
    """The request models bounded by one app's limits."""

    limits: RequestLimits
    item: type[ItemIn]
    options: type[ExplainOptions]
    explain: type[ExplainRequest]
    batch: type[BatchExplainRequest]


def build_request_models(limits: RequestLimits) -> RequestModels:
    f = _bounded_fields(limits)
    item = create_model(
        "ItemIn",
        __base__=ItemIn,
        __module__=__name__,
        __doc__=ItemIn.__doc__,
        title=(str, f["title"]),
        attributes=(dict[str, AttributeValue], f["attributes"]),
    )
    options = create_model(
        "ExplainOptions",
        __base__=ExplainOptions,
        __module__=__name__,
        __doc__=ExplainOptions.__doc__,
        max_new_tokens=(int, f["max_new_tokens"]),
        num_beams=(int, f["num_beams"]),
    )
    # mypy cannot see runtime classes as types; the bounded ones subclass the static ones.
    explain = create_model(
        "ExplainRequest",
        __base__=ExplainRequest,
        __module__=__name__,
        history=(list[item], f["history"]),  # type: ignore[valid-type]
        recommended_item=(item, f["recommended_item"]),
        options=(options | None, f["options"]),  # type: ignore[arg-type]
    )
    batch = create_model(
        "BatchExplainRequest",
        __base__=BatchExplainRequest,
        __module__=__name__,
        requests=(list[explain], f["requests"]),  # type: ignore[valid-type]
    )
    return RequestModels(limits=limits, item=item, options=options, explain=explain, batch=batch)


# --- responses ------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    type: str = Field(description="A stable, machine-readable error type.", examples=["overloaded"])
    message: str = Field(description="What went wrong, for people.")
    param: str | None = Field(
        default=None,
        description="The dotted path of the offending request field, if any.",
        examples=["history.3.title"],
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelRef(BaseModel):
    name: str
    version: str


class Usage(BaseModel):
    input_tokens: int = Field(description="Encoder input tokens after truncation.")
    output_tokens: int = Field(description="Tokens generated.")
    history_used: int = Field(description="History items that fit into the input budget.")


class Timing(BaseModel):
    queue_ms: float = Field(description="Time spent waiting in the batcher's queue.")
    inference_ms: float = Field(description="Time of the batch this request ran in.")
    total_ms: float = Field(description="Time from the request's arrival to its answer.")


class ExplainResponse(BaseModel):
    explanation: str
    user_known: bool = Field(
        description="False when the user id is unknown and the explanation is content-based."
    )
    model: ModelRef
    usage: Usage
    timing: Timing


class BatchItemResult(BaseModel):
    """Exactly one of `explanation` and `error` is set."""

    explanation: ExplainResponse | None = None
    error: ErrorBody | None = None


class BatchExplainResponse(BaseModel):
    results: list[BatchItemResult] = Field(description="One result per request, in order.")


class ModelCard(BaseModel):
    name: str
    version: str
    provider: str = Field(description="The execution provider that loaded: `cuda` or `cpu`.")
    input_format: str = Field(description="`<format name>/<format version>`.")
    num_users: int
    d_model: int
    created: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation metrics.")


class ModelsResponse(BaseModel):
    models: list[ModelCard]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    model: ModelRef
    provider: str
