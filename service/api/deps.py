"""Dependencies of the API routes, as `Annotated[..., Depends()]` aliases ending in `Dep`."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from explain.types import ModelInfo
from service.batching import DynamicBatcher
from service.engine import Engine
from service.errors import NotReadyError, UnauthorizedError
from service.lifespan import AppState
from service.metrics import Metrics
from service.schemas import ErrorResponse, ModelCard

F = TypeVar("F", bound=Callable[..., Any])

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <PRISM_API_KEY>`")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="`X-API-Key: <PRISM_API_KEY>`"
)


def get_state(request: Request) -> AppState:
    state = request.app.state.prism
    assert isinstance(state, AppState)
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


@dataclass(frozen=True)
class Serving:
    """The explainer and the batcher of the model being served, taken together."""

    engine: Engine
    batcher: DynamicBatcher


def get_serving(state: StateDep) -> Serving:
    # A failing (unhealthy) runtime still takes requests: a batch that succeeds is what
    # brings it back, and `/readyz` already steers traffic away meanwhile.
    if state.phase != "ready" or state.batcher is None or state.engine is None:
        raise NotReadyError(state.unready_reason())
    return Serving(state.engine, state.batcher)


ServingDep = Annotated[Serving, Depends(get_serving)]


def get_model_info(state: StateDep) -> ModelInfo:
    if state.info is None:
        raise NotReadyError(state.unready_reason())
    return state.info


ModelInfoDep = Annotated[ModelInfo, Depends(get_model_info)]


def get_model_card(state: StateDep) -> ModelCard:
    if state.card is None:
        raise NotReadyError(state.unready_reason())
    return state.card


ModelCardDep = Annotated[ModelCard, Depends(get_model_card)]


def require_api_key(
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    expected = state.api_key
    if expected is None:
        return
    offered = [bearer.credentials if bearer else None, header_key]
    if not any(
        k is not None and hmac.compare_digest(k.encode(), expected.encode()) for k in offered
    ):
        raise UnauthorizedError()


def bind_body(endpoint: F, model: type[BaseModel], *, param: str = "body") -> F:
    """Make FastAPI validate `endpoint`'s `param` with `model`, an app's bounded subclass of
    the annotated schema (`service.schemas.build_request_models`).

    FastAPI reads the body model from the endpoint's annotations, and the limits are
    settings, so each app's endpoint (a fresh closure) gets its own class. Static typing
    keeps seeing the base schema, whose methods the subclass inherits.
    """
    endpoint.__annotations__[param] = model
    return endpoint


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error body under each of `statuses`."""
    descriptions = {
        401: "A valid API key is required.",
        413: "The body is larger than `PRISM_MAX_BODY_BYTES`.",
        422: "The request is invalid; `param` names the field.",
        500: "Internal error (no internals are shown).",
        503: "Not ready yet, or overloaded (then with `Retry-After`).",
        504: "The request was not done by its deadline.",
    }
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}
