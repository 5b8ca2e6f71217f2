"""Dependencies of the API routes, as `Annotated[..., Depends()]` aliases ending in `Dep`."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from service.batching import DynamicBatcher
from service.deadlines import (
    MIN_TIMEOUT_MS,
    TIMEOUT_HEADER,
    arrival_of,
    budget_s,
    parse_timeout_ms,
)
from service.errors import InvalidRequestError, NotReadyError, UnauthorizedError
from service.metrics import Metrics
from service.schemas import ErrorResponse
from service.state import AppState, Serving

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


def get_serving(state: StateDep) -> Serving:
    """The model being served, taken once per request: a hot swap in the middle of it does
    not change what it runs on."""
    if state.phase != "ready" or state.serving is None:
        raise NotReadyError(state.unready_reason())
    return state.serving


ServingDep = Annotated[Serving, Depends(get_serving)]


def get_batcher(state: StateDep) -> DynamicBatcher:
    # A failing (unhealthy) runtime still takes requests: a batch that succeeds is what
    # brings it back, and `/readyz` already steers traffic away meanwhile.
    if state.phase != "ready" or state.batcher is None:
        raise NotReadyError(state.unready_reason())
    return state.batcher


BatcherDep = Annotated[DynamicBatcher, Depends(get_batcher)]


def get_deadline(
    request: Request,
    state: StateDep,
    # Annotated as `str` (not `str | None`) so that OpenAPI documents a string header, not
    # "string or null": a header cannot be null.
    timeout_ms: Annotated[
        str,  # noqa: RUF013
        Header(
            alias=TIMEOUT_HEADER,
            pattern=r"^([5-9][0-9]|[1-9][0-9]{2,8})(\.[0-9]+)?$",
            description="This request's deadline in ms, counted from its arrival: at least 50, "
            "at most `PRISM_REQUEST_TIMEOUT_MS` (longer asks are cut to it).",
        ),
    ] = None,  # type: ignore[assignment]
) -> float:
    """The request's deadline (`time.monotonic()`): its arrival plus its budget."""
    try:
        parse_timeout_ms(timeout_ms)
    except ValueError:
        raise InvalidRequestError(
            f"{TIMEOUT_HEADER} must be a number of milliseconds, at least {MIN_TIMEOUT_MS:.0f}",
            param=TIMEOUT_HEADER,
        ) from None
    budget = budget_s(timeout_ms, state.policy.request_timeout_s)
    return arrival_of(request.scope) + budget


DeadlineDep = Annotated[float, Depends(get_deadline)]


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


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (always present on 503).",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ERRORS = {
    400: "The body could not be read as JSON text (invalid UTF-8, nesting too deep).",
    401: "A valid API key is required.",
    409: "The reload was refused; the version that was serving keeps serving.",
    413: "The body is larger than `PRISM_MAX_BODY_BYTES`.",
    422: "The request is invalid; `param` names the field.",
    500: "Internal error (no internals are shown).",
    503: "Not ready yet (loading, unhealthy, draining) or overloaded; with `Retry-After`.",
    504: "The request was not done by its deadline.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the one error body under each of `statuses`."""
    return {
        s: {"model": ErrorResponse, "description": _ERRORS[s]}
        | ({"headers": _RETRY_AFTER} if s == 503 else {})
        for s in statuses
    }
