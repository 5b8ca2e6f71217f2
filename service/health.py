"""The runtime's health as the batcher sees it: failures in a row, self-probes, the watchdog.

Only failures of `generate` itself count (a request's own `prepare` or `finish` errors never
do). After `max_failures` in a row the runtime is unhealthy; while the batcher is idle it
then runs a small real request (the probe) with exponential backoff, and the first success
makes it healthy again. `stuck_for` is how long the running inference call has taken, which
the liveness probe compares with its watchdog limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class RuntimeHealth:
    def __init__(
        self,
        *,
        max_failures: int,
        backoff_s: tuple[float, float],
        on_probe: Callable[[bool], None],
    ) -> None:
        self._max_failures = max_failures
        self._backoff = backoff_s
        self._on_probe = on_probe
        self._failures = 0
        self._failing_since: float | None = None
        self._busy_since: float | None = None
        self._next_probe = 0.0
        self._probe_wait = backoff_s[0]
        self.probe: Callable[[], None] | None = None

    @property
    def healthy(self) -> bool:
        return self._failures < self._max_failures

    @property
    def busy(self) -> bool:
        return self._busy_since is not None

    def stuck_for(self) -> float:
        """How long the running inference call has taken so far (0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def failing_for(self) -> float:
        """How long the runtime has been unhealthy (0 when healthy)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around every inference call: what the watchdog times."""
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._max_failures and self._failing_since is None:
            self._failing_since = time.monotonic()
            self._probe_wait = self._backoff[0]
            self._next_probe = time.monotonic() + self._probe_wait
            logger.error("the runtime failed %d batches in a row: unready", self._failures)

    def succeeded(self) -> None:
        if self._failing_since is not None:
            logger.info("the runtime works again after %.1f s", self.failing_for())
        self._failures = 0
        self._failing_since = None

    def maybe_probe(self) -> None:
        """While unhealthy (and the batcher idle), run the probe when its backoff is up."""
        if self._failing_since is None or self.probe is None:
            return
        if time.monotonic() < self._next_probe:
            return
        try:
            with self.running():
                self.probe()
        except Exception as exc:
            self._probe_wait = min(self._probe_wait * 2, self._backoff[1])
            self._next_probe = time.monotonic() + self._probe_wait
            self._on_probe(False)
            logger.warning("runtime probe failed (%r); next in %.1f s", exc, self._probe_wait)
            return
        self._on_probe(True)
        self.succeeded()
