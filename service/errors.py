"""One error body for every failure: `{"error": {"type", "message", "param"}}`.

`ServiceError` subclasses carry their status and type (the exception-to-status table);
`install_error_handlers` renders them, FastAPI's validation errors and Starlette's HTTP
exceptions. Unhandled exceptions are caught by the telemetry middleware
(`service.telemetry.RequestTelemetryMiddleware`), which logs them once and answers with
`internal_error_response()`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.schemas import ErrorBody


class ServiceError(Exception):
    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> ErrorBody:
        return ErrorBody(type=self.error_type, message=self.message, param=self.param)


class InvalidRequestError(ServiceError):
    status_code = 422
    error_type = "invalid_request"


class UnauthorizedError(ServiceError):
    status_code = 401
    error_type = "unauthorized"

    def __init__(self, message: str = "a valid API key is required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class PayloadTooLargeError(ServiceError):
    status_code = 413
    error_type = "payload_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the request body exceeds the limit of {max_bytes} bytes")


def _retry_after(seconds: float) -> dict[str, str]:
    """Every 503 says when to come back: whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class NotReadyError(ServiceError):
    """Loading, unready or draining: 503 with `Retry-After`."""

    status_code = 503
    error_type = "not_ready"

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers=_retry_after(retry_after_s))


class OverloadedError(ServiceError):
    """Admission refused the request (concurrency, expected wait, a full queue)."""

    status_code = 503
    error_type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: float, reason: str = "queue_full") -> None:
        self.reason = reason
        super().__init__(message, headers=_retry_after(retry_after_s))


class DeadlineExceededError(ServiceError):
    status_code = 504
    error_type = "deadline_exceeded"


class BatchFailedError(ServiceError):
    status_code = 500
    error_type = "batch_failed"


class RequestFailedError(ServiceError):
    """One request failed in its own stage (prepare or finish); nothing else did."""

    status_code = 500
    error_type = "internal_error"


def error_response(
    status_code: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": body.model_dump()}, status_code=status_code, headers=headers)


def service_error_response(exc: ServiceError) -> JSONResponse:
    return error_response(exc.status_code, exc.body(), exc.headers)


def internal_error_response() -> JSONResponse:
    body = ErrorBody(type="internal_error", message="internal server error")
    return error_response(500, body)


_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_TYPE_EXPRESSION = re.compile(r"[\[\]()<>]|^function-|^(str|int|float|bool|none)$")
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def validation_error_body(errors: Sequence[Mapping[str, Any]]) -> ErrorBody:
    """The first problem, with `param` as a dotted path (`history.3.title`)."""
    if not errors:
        return ErrorBody(type="invalid_request", message="the request is invalid")
    first = errors[0]
    # pydantic puts union branches and validator chains into `loc` ("function-after[...]",
    # "list[str]"); they are not request fields.
    loc = [str(part) for part in first.get("loc", ()) if not _TYPE_EXPRESSION.search(str(part))]
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    kind = first.get("type")
    param: str | None = ".".join(loc) or None
    if kind == "json_invalid":
        param = None
        detail = (first.get("ctx") or {}).get("error", "invalid JSON")
        message = f"the body is not valid JSON: {detail}"
    elif param is None and kind == "missing":
        message = "a JSON request body is required"
    elif param is None and kind in _NOT_AN_OBJECT:
        message = "the body must be a JSON object sent as `Content-Type: application/json`"
    else:
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return ErrorBody(type="invalid_request", message=message, param=param)


_HTTP_TYPES = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, validation_error_body(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    kind = _HTTP_TYPES.get(status, "invalid_request" if status < 500 else "internal_error")
    return error_response(status, ErrorBody(type=kind, message=message), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class BodySizeLimitMiddleware:
    """Answers 413 for a body over `max_bytes`, by Content-Length or by streamed size.

    Both are checked when the app first reads the body, that is after routing, so the 413
    is counted under its route. The streamed size is counted as the app reads, so a chunked
    upload cannot bypass the limit. Past it `receive` raises, and whatever the app then
    tries to send (FastAPI turns a failed body read into a 400) is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = self._declared_length(scope)
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if declared > self.max_bytes:
                exceeded = True
                raise PayloadTooLargeError(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLargeError(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLargeError:
            if not exceeded:
                raise
        if exceeded and not started:
            await service_error_response(PayloadTooLargeError(self.max_bytes))(scope, receive, send)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0  # the server rejects a malformed length itself
        return 0
