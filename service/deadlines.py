"""Deadlines: counted from a request's arrival, bounded by the server, shortened by the client.

The outermost middleware stamps the arrival time into the ASGI scope (`stamp_arrival`); the
route reads it back (`arrival_of`) and adds the budget: `X-Request-Timeout-Ms` when the
client sends one, never more than `PRISM_REQUEST_TIMEOUT_MS`.
"""

from __future__ import annotations

import math
import time

from starlette.types import Scope

ARRIVAL = "prism_arrival"  # key in the ASGI scope's "state": time.monotonic() at arrival
TIMEOUT_HEADER = "X-Request-Timeout-Ms"
# No request can be explained faster: a shorter deadline is a client bug (422), not overload.
MIN_TIMEOUT_MS = 50.0


def arrival_of(scope: Scope) -> float:
    state = scope.get("state") or {}
    value = state.get(ARRIVAL)
    return float(value) if isinstance(value, int | float) else time.monotonic()


def stamp_arrival(scope: Scope) -> None:
    scope.setdefault("state", {})[ARRIVAL] = time.monotonic()


def parse_timeout_ms(raw: str | None) -> float | None:
    """The client's deadline in ms, or None when it sent none; ValueError when malformed."""
    if raw is None:
        return None
    value = float(raw)
    if not math.isfinite(value) or value < MIN_TIMEOUT_MS:
        raise ValueError(f"{TIMEOUT_HEADER} must be at least {MIN_TIMEOUT_MS:.0f} milliseconds")
    return value


def budget_s(raw_timeout: str | None, limit_s: float) -> float:
    """The request's deadline budget: the client's, bounded by the server's (lenient: a
    malformed header is answered 422 by the route, so here it just counts as absent)."""
    try:
        asked = parse_timeout_ms(raw_timeout)
    except ValueError:
        asked = None
    return limit_s if asked is None else min(asked / 1000.0, limit_s)
