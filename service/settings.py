"""Service configuration: every field maps to a `PRISM_*` environment variable.

Only the app factory and the lifespan read `Settings`; every other component gets plain
values through its constructor, so tests build `Settings(...)` directly. The request limits
are defined once, in `service.limits.RequestLimits`, which `Settings` extends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from explain.explainer import DecodeSettings
from explain.session import SpinMode
from service.limits import RequestLimits

Provider = Literal["auto", "cuda", "cpu"]
Variant = Literal["auto", "fp32", "int8", "fp16"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(RequestLimits, BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRISM_", extra="ignore", frozen=True)

    # --- the model -------------------------------------------------------------------
    store_dir: Path = Field(default=Path("store"), description="Root directory of the model store.")
    model_name: str = Field(
        default="prism-movies", min_length=1, description="Name of the model to serve."
    )
    model_ref: str = Field(
        default="production",
        min_length=1,
        description="Version or alias (`latest`, `production`) of the model to serve.",
    )
    provider: Provider = Field(
        default="auto",
        description="ONNX Runtime execution provider: `auto` (CUDA when present, else CPU), "
        "`cuda` or `cpu`.",
    )
    variant: Variant = Field(
        default="auto",
        description="Precision variant of the graphs: `auto` serves int8 on CPU and fp16 on "
        "CUDA when that variant passed its publish-time gate (at least 98 % of answers "
        "identical to fp32 and every quality bar), else fp32; naming a variant that did not "
        "pass refuses to load.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="ONNX Runtime intra-op threads; 0 keeps the ONNX Runtime default.",
    )
    intra_op_spinning: SpinMode = Field(
        default="run",
        description="What idle ONNX Runtime intra-op threads do on CPU: `run` spins between "
        "the nodes of a run and sleeps when it ends (at bart-base, int8, 2 threads: batch 1 "
        "about 1.5x and a static batch of 32 about 1.2x faster than `off`); `off` always "
        "sleeps, leaving the cores to whatever shares them (the event loop, a neighbour) at "
        "every hand-off. See README *Runtime*.",
    )
    decode_lanes: int = Field(
        default=1,
        ge=1,
        le=16,
        description="CPU only: a batch runs as this many parts at once, on one copy of the "
        "weights, each session with `intra_op_threads` / lanes threads (0 threads: every "
        "core). It pays with the int8 variant and full batches: on 2 cores (bart-base shape) 2 "
        "lanes gave 1.19-1.32x the throughput at a static batch of 32 (two runs); a lone "
        "request was 1.10-1.15x slower, the running decode with 16 clients 0.91-0.93x (one "
        "earlier run: 1.09x) and 141-222 MB higher at its peak; on fp32 graphs lanes were "
        "slower (0.77-0.80x). "
        "1 puts latency first. See README *Decode lanes*.",
    )
    auto_export: bool = Field(
        default=True,
        description="Export a version to ONNX on load when it has no ONNX artifacts "
        "(needs the training extra).",
    )
    warmup: bool = Field(
        default=True,
        description="Run a warm-up batch after loading; `/readyz` stays 503 until it is done.",
    )

    # --- batching and deadlines ------------------------------------------------------
    max_batch_size: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Most requests the batcher puts in one batch (with continuous batching: "
        "most rows decoding at once).",
    )
    continuous_batching: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Iteration-level batching: greedy requests join the running decode between "
        "steps and leave as soon as they end (the beam second pass, and models exported "
        "without the join inputs, are batched statically). `auto`: on for models with "
        "d_model >= 512 (bart-base and larger), whose decoder step outweighs the Python around "
        "it; off for smaller ones, which static batches serve faster.",
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="How long the batcher waits for more requests after the first one, in ms, "
        "when nothing is running and the first is for a static batch; a request that joins "
        "the running decode (`PRISM_CONTINUOUS_BATCHING`) starts at once, and later arrivals "
        "join it between steps.",
    )
    max_queue: int = Field(
        default=256,
        ge=1,
        description="Requests that may wait in the queue; beyond this the service answers "
        "503 with `Retry-After`.",
    )
    request_timeout_ms: float = Field(
        default=10_000.0,
        gt=0.0,
        description="Longest deadline of a request in ms, counted from its arrival; a client "
        "may ask for a shorter one with `X-Request-Timeout-Ms`. Not done by then: 504.",
    )
    max_concurrent_requests: int = Field(
        default=64,
        ge=1,
        description="Explanation requests in flight at once; beyond this the service answers "
        "503 with `Retry-After` before reading the body.",
    )
    max_queue_wait_ms: float = Field(
        default=1_000.0,
        gt=0.0,
        description="Admission: a request that could not start within this (the queue ahead "
        "of it at the measured service rate), or finish within its own deadline, gets 503 "
        "with `Retry-After` before its body is read.",
    )

    # --- request limits: inherited from `RequestLimits` (service/limits.py) -------------
    max_input_tokens: int | None = Field(
        default=None,
        ge=8,
        description="Encoder input budget in tokens (the oldest history is truncated first); "
        "unset uses the model's own budget.",
    )
    max_body_bytes: int = Field(
        default=262_144,
        ge=1024,
        description="Largest request body accepted, in bytes; larger bodies get 413.",
    )
    min_new_tokens: int = Field(
        default=DecodeSettings().min_new_tokens,
        ge=0,
        description="EOS is banned until this many tokens (BOS included) are generated, so an "
        "answer is never empty.",
    )
    second_pass_candidates: int = Field(
        default=DecodeSettings().candidates,
        ge=1,
        le=16,
        description="When the verifier refuses the greedy answer, a beam search of this width "
        "runs and its candidates are checked in order; 1 turns the second pass off (the "
        "evidence sentence is served at once).",
    )

    # --- health and hot swap -----------------------------------------------------------
    inference_watchdog_s: float = Field(
        default=60.0,
        gt=0.0,
        description="An inference call running longer than this makes `/healthz` fail, so "
        "the orchestrator restarts the process.",
    )
    unhealthy_restart_s: float = Field(
        default=300.0,
        gt=0.0,
        description="A runtime that keeps failing (and failing its self-probes) for longer "
        "than this makes `/healthz` fail.",
    )
    exit_on_load_failure: bool = Field(
        default=True,
        description="Exit with code 3 when the model cannot be loaded at start; false keeps "
        "the process alive and unready.",
    )
    reload_poll_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Check the store every this many seconds and hot-swap when the served "
        "ref names a new version; 0 only reloads on `POST /admin/reload`.",
    )

    # --- access and operations -------------------------------------------------------
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, `/v1/*` needs `Authorization: Bearer <key>` or `X-API-Key: "
        "<key>`, else 401.",
    )
    log_level: LogLevel = Field(default="info", description="Log level of the service loggers.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def api_key_value(self) -> str | None:
        """The key as plain text, or None when auth is off (an empty key also means off)."""
        if self.api_key is None:
            return None
        return self.api_key.get_secret_value() or None

    def decode(self) -> DecodeSettings:
        """How the served model decodes (token limits come with each request, from the
        schema's defaults)."""
        return DecodeSettings(
            min_new_tokens=self.min_new_tokens, candidates=self.second_pass_candidates
        )
