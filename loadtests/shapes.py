"""Load shapes for the Prism load test, chosen with PRISM_LOAD_SHAPE=step|spike.

Both are bounded in time: `tick()` returns None at the end and locust stops. Without
PRISM_LOAD_SHAPE the locustfile exposes no shape and the usual -u/-r/-t options apply.

step   PRISM_STEP_USERS users more every PRISM_STEP_SECONDS, PRISM_STEP_COUNT times, then
       hold the top step for PRISM_STEP_HOLD_SECONDS: finds the knee of the latency curve.
spike  PRISM_SPIKE_BASE_USERS for PRISM_SPIKE_WARMUP_SECONDS, a jump to
       PRISM_SPIKE_PEAK_USERS for PRISM_SPIKE_SECONDS, back to the base for
       PRISM_SPIKE_RECOVER_SECONDS: checks load shedding (503 + Retry-After) and recovery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from locust import LoadTestShape


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    value = int(raw) if raw else default
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class StepLoadShape(LoadTestShape):
    """Staircase: +users every step, then a hold, then stop."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if env is None else env
        self.step_users = max(1, _int(env, "PRISM_STEP_USERS", 10))
        self.step_seconds = max(1, _int(env, "PRISM_STEP_SECONDS", 60))
        self.steps = max(1, _int(env, "PRISM_STEP_COUNT", 5))
        self.hold_seconds = _int(env, "PRISM_STEP_HOLD_SECONDS", 60)
        self.spawn_rate = float(max(1, _int(env, "PRISM_STEP_SPAWN_RATE", self.step_users)))

    @property
    def duration(self) -> float:
        return self.steps * self.step_seconds + self.hold_seconds

    def users_at(self, t: float) -> int | None:
        if t >= self.duration:
            return None
        step = min(self.steps, int(t // self.step_seconds) + 1)
        return step * self.step_users

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        return None if users is None else (users, self.spawn_rate)


class SpikeLoadShape(LoadTestShape):
    """Baseline, a sudden spike, baseline again (recovery), then stop."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if env is None else env
        self.base_users = max(1, _int(env, "PRISM_SPIKE_BASE_USERS", 5))
        self.peak_users = max(self.base_users, _int(env, "PRISM_SPIKE_PEAK_USERS", 50))
        self.warmup_seconds = _int(env, "PRISM_SPIKE_WARMUP_SECONDS", 60)
        self.spike_seconds = max(1, _int(env, "PRISM_SPIKE_SECONDS", 30))
        self.recover_seconds = _int(env, "PRISM_SPIKE_RECOVER_SECONDS", 90)
        # Spawn the whole spike within about a second: a spike, not a ramp.
        self.spike_rate = float(max(1, self.peak_users - self.base_users))

    @property
    def duration(self) -> float:
        return self.warmup_seconds + self.spike_seconds + self.recover_seconds

    def users_at(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration:
            return None
        if self.warmup_seconds <= t < self.warmup_seconds + self.spike_seconds:
            return self.peak_users, self.spike_rate
        return self.base_users, self.spike_rate

    def tick(self) -> tuple[int, float] | None:
        return self.users_at(self.get_run_time())


SHAPES: dict[str, type[LoadTestShape]] = {"step": StepLoadShape, "spike": SpikeLoadShape}


def shape_from_env(env: Mapping[str, str] | None = None) -> type[LoadTestShape] | None:
    """The shape class PRISM_LOAD_SHAPE names, or None when it is unset or empty."""
    env = os.environ if env is None else env
    name = env.get("PRISM_LOAD_SHAPE", "").strip().lower()
    if not name:
        return None
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(
            f"PRISM_LOAD_SHAPE={name!r}: expected one of {', '.join(sorted(SHAPES))}"
        ) from None
