"""Admission control: refuse overload cheaply, before a request's body is read or parsed.

An explanation request is admitted only if the service can answer it in time. Before its
body is touched, the middleware checks, in order:

- the service is ready (else 503 `not_ready`, `Retry-After` 5 s while loading);
- fewer than `max_concurrent` explanation requests are in flight (else 503 `overloaded`);
- it can start within `max_queue_wait_s` (the queue ahead of it at the measured service
  rate, `DynamicBatcher.expected_start_s`) and be done within its own deadline (that and
  its own time, `expected_wait_s`) (else 503 `overloaded`). Until 2026-12-05 the finish was
  held to both, so a model whose one batch outlasts the queue-wait budget refused nearly
  everything under load (bart-base, fp32, 2 cores: 138 of 140 at 2x overload).

Every 503 carries `Retry-After`: the seconds until the expected wait is back within bounds.
The deadline clock starts when the request arrives (`arrival` below, stamped by the
outermost middleware); a client may shorten it with `X-Request-Timeout-Ms`, never lengthen
it past `PRISM_REQUEST_TIMEOUT_MS`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.deadlines import budget_s
from service.errors import NotReadyError, OverloadedError, ServiceError, service_error_response
from service.state import AppState

ADMITTED_PATHS = frozenset({"/v1/explanations", "/v1/explanations/batch"})
LOADING_RETRY_S = 5.0


def admission_error(state: AppState, timeout_header: str | None) -> ServiceError | None:
    """Why a new explanation request cannot be taken now, or None to admit it."""
    policy, batcher = state.policy, state.batcher
    if state.phase != "ready" or state.serving is None or batcher is None:
        wait = LOADING_RETRY_S if state.phase == "loading" else 1.0
        return NotReadyError(state.unready_reason(), retry_after_s=wait)
    expected = batcher.expected_wait_s()
    if state.in_flight >= policy.max_concurrent:
        return OverloadedError(
            f"{state.in_flight} requests are in flight (the limit is {policy.max_concurrent})",
            retry_after_s=expected,
            reason="concurrency",
        )
    start = batcher.expected_start_s()
    deadline = budget_s(timeout_header, policy.request_timeout_s)
    late = max(start - policy.max_queue_wait_s, expected - deadline)
    if late > 0:
        return OverloadedError(
            f"the expected wait ({start * 1000:.0f} ms to start, {expected * 1000:.0f} ms to "
            f"finish) exceeds what this request allows ({policy.max_queue_wait_s * 1000:.0f} "
            f"ms to start, {deadline * 1000:.0f} ms to finish)",
            retry_after_s=late,
            reason="expected_wait",
        )
    return None


class AdmissionMiddleware:
    """Runs `admission_error` for explanation requests before their body is read, and keeps
    `AppState.in_flight`."""

    def __init__(self, app: ASGIApp, *, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in ADMITTED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-timeout-ms":
                header = bytes(value).decode("latin-1")
                break
        refusal = admission_error(self.state, header)
        if refusal is not None:
            self.state.metrics.rejected(getattr(refusal, "reason", refusal.error_type))
            await service_error_response(refusal)(scope, receive, send)
            return
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1
