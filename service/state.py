"""What the API layer reads (through `service.api.deps`): plain values, no Settings.

`Serving` is one loaded model: its explainer, info and card. A hot swap replaces
`AppState.serving` in one assignment; a request takes its `Serving` once, when it starts, and
prepares, generates and finishes with that one, so in-flight requests finish on the version
they started on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from explain.types import ModelInfo
from service.batching import DynamicBatcher
from service.engine import Engine
from service.metrics import Metrics
from service.schemas import ModelCard, ReloadResponse, RequestModels

Phase = Literal["loading", "ready", "failed", "stopped"]


@dataclass(frozen=True)
class Serving:
    engine: Engine
    info: ModelInfo
    card: ModelCard


@dataclass(frozen=True)
class Policy:
    """Admission and health limits (from the settings)."""

    request_timeout_s: float  # the longest deadline; a client may ask for a shorter one
    max_concurrent: int  # explanation requests in flight; beyond: 503 before parsing
    max_queue_wait_s: float  # expected wait beyond this: 503 before parsing
    watchdog_s: float  # a `generate` call running longer: liveness fails
    unhealthy_restart_s: float  # a runtime failing longer: liveness fails


@dataclass
class AppState:
    metrics: Metrics
    request_models: RequestModels
    api_key: str | None
    policy: Policy
    # Runs each request's `prepare` and `finish`, off the event loop and off the inference
    # thread; sized for the CPU work of input building and slot filling.
    workers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="prism-request")
    )
    phase: Phase = "loading"
    failure: str | None = None
    serving: Serving | None = None
    batcher: DynamicBatcher | None = None
    # Set by the lifespan when the app loads from the store (not with an injected engine).
    reload: Callable[[], Awaitable[ReloadResponse]] | None = None
    last_reload: ReloadResponse | None = None
    in_flight: int = 0

    @property
    def ready(self) -> bool:
        batcher = self.batcher
        live, _ = self.liveness()
        return (
            self.phase == "ready"
            and self.serving is not None
            and batcher is not None
            and batcher.healthy
            and live
        )

    def liveness(self) -> tuple[bool, str]:
        """False (with why) when only a restart can help: the worker died, an inference call
        hangs past the watchdog, or the runtime has been failing for too long."""
        batcher = self.batcher
        if batcher is None or self.phase != "ready":
            return True, "ok"
        if not batcher.alive:
            return False, "the inference worker has stopped"
        if batcher.stuck_for() > self.policy.watchdog_s:
            return False, f"an inference call has run for {batcher.stuck_for():.0f} s"
        if batcher.failing_for() > self.policy.unhealthy_restart_s:
            return False, f"the runtime has been failing for {batcher.failing_for():.0f} s"
        return True, "ok"

    def unready_reason(self) -> str:
        if self.phase == "loading":
            return "the model is loading"
        if self.phase == "failed":
            return f"the model failed to load ({self.failure}); see the service log"
        if self.phase == "stopped":
            return "the service is shutting down"
        live, why = self.liveness()
        if not live:
            return why
        return "the runtime is failing (several batches in a row failed); it probes itself"
