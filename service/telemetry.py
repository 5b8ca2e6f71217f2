"""The outermost middleware: a request id for every request, request metrics for every
response, and the catch-all that logs an unhandled exception once and answers 500."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deadlines import stamp_arrival
from service.errors import internal_error_response
from service.metrics import UNMATCHED_ROUTE, Metrics

logger = logging.getLogger(__name__)

REQUEST_ID: ContextVar[str | None] = ContextVar("prism_request_id", default=None)
_VALID_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def route_template(scope: Scope) -> str:
    """The template of the route that served `scope` (`/v1/explanations`), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestTelemetryMiddleware:
    """Outermost middleware: `X-Request-ID`, request metrics for every response, and the
    catch-all that logs an unhandled exception once and answers 500 without internals."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        stamp_arrival(scope)  # the request's deadline counts from here
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not response_started:
                await internal_error_response()(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(
                route_template(scope), status, time.perf_counter() - started
            )
            REQUEST_ID.reset(token)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex
