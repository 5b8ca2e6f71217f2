"""The service's lifecycle: logging, loading the explainer in the background, the batcher.

The lifespan returns at once, so `/healthz` answers while the model loads on a daemon
thread; `/readyz` stays 503 until the engine is loaded, warmed up and the batcher runs. A
model that fails to load is logged and leaves the service alive but unready (it is not
retried: fix the store or the settings and restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI

from explain.errors import ModelLoadError
from explain.types import ModelInfo
from model_store.store import ModelStore, StoreError
from service.batching import DynamicBatcher
from service.engine import Engine
from service.metrics import REQUEST_ID, Metrics
from service.schemas import ModelCard, RequestModels
from service.settings import Settings

logger = logging.getLogger(__name__)

Phase = Literal["loading", "ready", "failed", "stopped"]


@dataclass
class AppState:
    """What the API layer reads (through `service.api.deps`): plain values, no Settings."""

    metrics: Metrics
    request_models: RequestModels
    api_key: str | None
    request_timeout_s: float
    # Runs each request's `prepare` and `finish`, off the event loop and off the inference
    # thread; sized for the CPU work of input building and slot filling.
    workers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="prism-request")
    )
    phase: Phase = "loading"
    failure: str | None = None
    engine: Engine | None = None
    batcher: DynamicBatcher | None = None
    info: ModelInfo | None = None
    card: ModelCard | None = None

    @property
    def ready(self) -> bool:
        return self.phase == "ready" and self.batcher is not None and self.batcher.healthy

    def unready_reason(self) -> str:
        if self.phase == "loading":
            return "the model is loading"
        if self.phase == "failed":
            return f"the model failed to load ({self.failure}); see the service log"
        if self.phase == "stopped":
            return "the service is shutting down"
        return "the runtime is failing (several batches in a row failed); see the service log"


def build_lifespan(
    settings: Settings, state: AppState, engine: Engine | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        lifecycle = _Lifecycle(settings, state, engine)
        lifecycle.start()
        try:
            yield
        finally:
            await lifecycle.stop()

    return lifespan


class _Lifecycle:
    """Owns the engine it loads (an injected one stays the caller's) and the batcher."""

    def __init__(self, settings: Settings, state: AppState, engine: Engine | None) -> None:
        self._settings = settings
        self._state = state
        self._injected = engine
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        self._state.metrics.track_readiness(lambda: self._state.ready)
        threading.Thread(target=self._load, name="prism-loader", daemon=True).start()

    async def stop(self) -> None:
        with self._lock:
            self._stopping = True
            batcher = self._state.batcher
        self._state.phase = "stopped"
        drain_s = min(self._settings.request_timeout_ms / 1000.0, 30.0)
        if batcher is not None:
            await asyncio.to_thread(batcher.stop, drain_s)
        self._state.workers.shutdown(wait=False, cancel_futures=True)
        logger.info("service stopped")

    def _load(self) -> None:
        s = self._settings
        started = time.monotonic()
        try:
            engine, card = self._open()
        except Exception as exc:
            self._fail(exc, "load")
            return
        try:
            if s.warmup:
                engine.warmup()
            batcher = DynamicBatcher(
                engine,
                max_batch_size=s.max_batch_size,
                max_wait_ms=s.max_wait_ms,
                max_queue=s.max_queue,
                observer=self._state.metrics,
            )
            batcher.start()
        except Exception as exc:
            self._fail(exc, "warm up")
            return
        info = engine.info
        with self._lock:
            if self._stopping:  # shut down while loading: stop() saw no batcher to stop
                batcher.stop(0.0)
                return
            self._state.engine, self._state.batcher = engine, batcher
            self._state.info, self._state.card = info, card
            self._state.phase = "ready"
        self._state.metrics.set_model(info)
        logger.info(
            "model ready",
            extra={
                "model": info.name,
                "version": info.version,
                "provider": info.provider,
                "input_format": info.input_format,
                "load_s": round(time.monotonic() - started, 3),
            },
        )

    def _open(self) -> tuple[Engine, ModelCard]:
        if self._injected is not None:
            return self._injected, model_card(self._injected.info, None)
        # Imported here: the loader pulls in onnxruntime, which the API layer never needs.
        from service.loader import load_explainer

        s = self._settings
        logger.info(
            "loading model",
            extra={"store": str(s.store_dir), "model": s.model_name, "ref": s.model_ref},
        )
        store = ModelStore(s.store_dir)
        version = store.resolve(s.model_name, s.model_ref)
        engine = load_explainer(
            store,
            version,
            provider=s.provider,
            intra_op_threads=s.intra_op_threads,
            max_history=s.max_history,
            max_input_tokens=s.max_input_tokens,
            max_new_tokens_limit=s.max_new_tokens_limit,
            decode=s.decode(),
            auto_export=s.auto_export,
        )
        return engine, model_card(engine.info, version.manifest)

    def _fail(self, exc: Exception, stage: str) -> None:
        s = self._settings
        where = f"{s.model_name}@{s.model_ref} from {s.store_dir}"
        if isinstance(
            exc, StoreError | ImportError | ModelLoadError
        ):  # a clear message; no traceback needed
            logger.error("cannot %s model %s: %s", stage, where, exc)
        else:
            logger.exception("cannot %s model %s", stage, where)
        with self._lock:
            if not self._stopping:
                self._state.phase, self._state.failure = "failed", type(exc).__name__


def model_card(info: ModelInfo, manifest: Any | None) -> ModelCard:
    """`/v1/models`' view of a model: the engine's info plus the manifest's date and eval."""
    created = getattr(manifest, "created", None)
    evaluation = getattr(manifest, "eval", None)
    return ModelCard(
        name=info.name,
        version=info.version,
        provider=info.provider,
        input_format=info.input_format,
        num_users=info.num_users,
        d_model=info.d_model,
        created=created if isinstance(created, str) else None,
        metrics=dict(evaluation) if isinstance(evaluation, Mapping) else {},
    )


# --- logging ----------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send the `service`, `explain` and `model_store` loggers to stderr as JSON lines
    (idempotent)."""
    for name in ("service", "explain", "model_store"):
        target = logging.getLogger(name)
        target.setLevel(level.upper())
        if not any(isinstance(h, _JsonLineHandler) for h in target.handlers):
            target.addHandler(_JsonLineHandler())


class _JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonLineFormatter())
