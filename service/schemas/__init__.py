"""The HTTP API's schemas (pydantic v2), kept apart from the runtime's value objects.

`requests` holds the request models and `build_request_models`, which bounds them by the
configured limits; `responses` the response and error models; `fields` the types and the
bounded fields the request models share.
"""

from service.schemas.fields import MAX_ID_CHARS, AttributeValue, ExternalId
from service.schemas.requests import (
    EXAMPLE_REQUEST,
    BatchExplainRequest,
    ExplainOptions,
    ExplainRequest,
    ItemIn,
    RequestModels,
    build_request_models,
)
from service.schemas.responses import (
    BatchExplainResponse,
    BatchItemResult,
    ErrorBody,
    ErrorResponse,
    Evidence,
    ExplainResponse,
    HealthResponse,
    ModelCard,
    ModelRef,
    ModelsResponse,
    ReadyResponse,
    ReloadResponse,
    Timing,
    Usage,
    VariantCard,
)

__all__ = [
    "EXAMPLE_REQUEST",
    "MAX_ID_CHARS",
    "AttributeValue",
    "BatchExplainRequest",
    "BatchExplainResponse",
    "BatchItemResult",
    "ErrorBody",
    "ErrorResponse",
    "Evidence",
    "ExplainOptions",
    "ExplainRequest",
    "ExplainResponse",
    "ExternalId",
    "HealthResponse",
    "ItemIn",
    "ModelCard",
    "ModelRef",
    "ModelsResponse",
    "ReadyResponse",
    "ReloadResponse",
    "RequestModels",
    "Timing",
    "Usage",
    "VariantCard",
    "build_request_models",
]
