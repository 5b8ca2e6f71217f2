"""The service's lifecycle: loading in the background, hot swaps, and the drain on shutdown.

The lifespan returns at once, so `/healthz` answers while the model loads on a daemon thread;
`/readyz` stays 503 until the explainer is loaded and warm and the batcher runs. A model that
cannot be loaded at start ends the process with exit code 3 and a clear log line (the
orchestrator restarts it; `PRISM_EXIT_ON_LOAD_FAILURE=false` keeps it alive but unready).

Hot swap: `reload` resolves the served ref (`production` by default) again; a new version is
loaded next to the old one (its files verified by the store, its parity required), warmed,
and then `AppState.serving` is replaced in one assignment. In-flight requests hold the
`Serving` they started with; a version that fails to load or warm is refused, and the old one
keeps serving. `PRISM_RELOAD_POLL_S` also reloads on a timer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI

from explain.errors import ModelLoadError
from explain.items import Item
from explain.types import ExplainJob, ModelInfo
from model_store.store import ModelStore, StoreError
from service.batching import DynamicBatcher
from service.engine import Engine
from service.schemas import ModelCard, ReloadResponse, VariantCard
from service.settings import Settings
from service.state import AppState, Serving

logger = logging.getLogger(__name__)
EXIT_LOAD_FAILED = 3
ReloadStatus = Literal["swapped", "unchanged", "refused"]
_PROBE_JOB = ExplainJob("__probe__", (), Item("Heat (1995)"), 4)


def build_lifespan(
    settings: Settings, state: AppState, engine: Engine | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        lifecycle = _Lifecycle(settings, state, engine)
        lifecycle.start()
        poller = None
        if settings.reload_poll_s > 0 and engine is None:
            poller = asyncio.create_task(lifecycle.poll(settings.reload_poll_s))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with suppress(asyncio.CancelledError):
                    await poller
            await lifecycle.stop()

    return lifespan


class _Lifecycle:
    """Loads (or takes the injected) explainer, runs the batcher, swaps versions."""

    def __init__(self, settings: Settings, state: AppState, engine: Engine | None) -> None:
        self._settings = settings
        self._state = state
        self._injected = engine
        self._lock = threading.Lock()
        self._reload_lock = asyncio.Lock()
        self._stopping = False

    def start(self) -> None:
        self._state.metrics.track_readiness(lambda: self._state.ready)
        if self._injected is None:
            self._state.reload = self.reload
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

    # --- the first load ------------------------------------------------------------------

    def _load(self) -> None:
        s = self._settings
        started = time.monotonic()
        try:
            serving = self._open(s.model_ref)
        except Exception as exc:
            self._fail(exc, "load")
            return
        try:
            batcher = DynamicBatcher(
                max_batch_size=s.max_batch_size,
                max_wait_ms=s.max_wait_ms,
                max_queue=s.max_queue,
                observer=self._state.metrics,
                continuous=s.continuous_batching,
            )
            batcher.set_probe(_prober(serving.engine))
            batcher.start()
        except Exception as exc:
            self._fail(exc, "start")
            return
        with self._lock:
            if self._stopping:  # shut down while loading: stop() saw no batcher to stop
                batcher.stop(0.0)
                return
            self._state.serving, self._state.batcher = serving, batcher
            self._state.phase = "ready"
        self._state.metrics.set_model(serving.info)
        # Everything allocated so far (modules, the tokenizer, the user index) lives as long
        # as the process: moved out of the collector's reach, a full collection no longer
        # walks it, which kept stalling the event loop (and /healthz) for tens of ms.
        gc.freeze()
        logger.info(
            "model ready",
            extra={
                "model": serving.info.name,
                "version": serving.info.version,
                "provider": serving.info.provider,
                "variant": serving.info.variant,
                "input_format": serving.info.input_format,
                "load_s": round(time.monotonic() - started, 3),
            },
        )

    def _open(self, ref: str) -> Serving:
        """Load and warm the explainer `ref` names (or the injected one)."""
        if self._injected is not None:
            engine: Engine = self._injected
            card = model_card(engine.info, None)
        else:
            engine, card = self._load_from_store(ref)
        if self._settings.warmup:
            engine.warmup()
        return Serving(engine, engine.info, card)

    def _load_from_store(self, ref: str) -> tuple[Engine, ModelCard]:
        # Imported here: the loader pulls in onnxruntime, which the API layer never needs.
        from service.loader import load_served_explainer

        s = self._settings
        logger.info(
            "loading model", extra={"store": str(s.store_dir), "model": s.model_name, "ref": ref}
        )
        store = ModelStore(s.store_dir)
        version = store.resolve(s.model_name, ref)  # every file checked against its sha256
        engine = load_served_explainer(store, version, s)
        return engine, model_card(engine.info, version.manifest)

    def _fail(self, exc: Exception, stage: str) -> None:
        s = self._settings
        where = f"{s.model_name}@{s.model_ref} from {s.store_dir}"
        if isinstance(exc, StoreError | ImportError | ModelLoadError):  # a clear message
            logger.error("cannot %s model %s: %s", stage, where, exc)
        else:
            logger.exception("cannot %s model %s", stage, where)
        with self._lock:
            if self._stopping:
                return
            self._state.phase, self._state.failure = "failed", type(exc).__name__
        if s.exit_on_load_failure:
            logger.critical("exiting with code %d: the model cannot be served", EXIT_LOAD_FAILED)
            logging.shutdown()
            # From the loader thread: nothing has been served yet, so nothing is cut short.
            os._exit(EXIT_LOAD_FAILED)

    # --- hot swap -----------------------------------------------------------------------

    async def reload(self) -> ReloadResponse:
        """Serve what the ref names now: load, verify, warm, swap; or refuse and keep going."""
        async with self._reload_lock:
            state = self._state
            current = state.serving
            if state.phase != "ready" or current is None:
                return self._record("refused", current, None, "the service is not ready yet")
            s = self._settings
            try:
                target = ModelStore(s.store_dir).version_of(s.model_name, s.model_ref)
            except StoreError as exc:
                return self._record("refused", current, None, str(exc))
            if target == current.info.version:
                return self._record("unchanged", current, target, None)
            try:
                serving = await asyncio.to_thread(self._open, target)
            except Exception as exc:
                logger.error("hot swap to %s@%s refused: %s", s.model_name, target, exc)
                state.metrics.swapped(ok=False)
                return self._record("refused", current, target, f"{type(exc).__name__}: {exc}")
            batcher = state.batcher
            if batcher is not None:
                batcher.set_probe(_prober(serving.engine))
            state.serving = serving  # the swap: new requests take the new version
            state.metrics.set_model(serving.info)
            state.metrics.swapped(ok=True)
            logger.info("hot swap: %s -> %s", current.info.version, serving.info.version)
            return self._record("swapped", current, target, None)

    async def poll(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.reload()
            except Exception:
                logger.exception("reload poll failed")

    def _record(
        self, status: ReloadStatus, current: Serving | None, target: str | None, error: str | None
    ) -> ReloadResponse:
        served = self._state.serving or current
        result = ReloadResponse(
            status=status,
            served=served.info.version if served is not None else None,
            previous=current.info.version if current is not None else None,
            requested=target,
            error=error,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if status != "unchanged":
            self._state.last_reload = result
        return result


def _prober(engine: Engine) -> Callable[[], None]:
    """A small real request through the explainer: what the batcher runs to test a failing
    runtime before taking it back into rotation."""

    def probe() -> None:
        prepared = engine.prepare(_PROBE_JOB)
        engine.finish(prepared, engine.generate([prepared]).generations[0])

    return probe


def _variant_cards(manifest: Any | None) -> dict[str, VariantCard]:
    variants = getattr(manifest, "variants", None)
    if not isinstance(variants, Mapping):
        return {}
    return {
        name: VariantCard(
            servable=v.servable,
            sequences_identical=v.sequences_identical,
            tokens_identical=v.tokens_identical,
            compared=v.compared,
            bars_passed=v.bars_passed,
            reason=v.reason,
            method=v.method,
            recipe=v.recipe,
            refused=list(v.refused),
        )
        for name, v in variants.items()
    }


def model_card(info: ModelInfo, manifest: Any | None) -> ModelCard:
    """`/v1/models`' view of a model: the engine's info plus the manifest's date and eval."""
    created = getattr(manifest, "created", None)
    evaluation = getattr(manifest, "eval", None)
    return ModelCard(
        name=info.name,
        version=info.version,
        provider=info.provider,
        variant=info.variant,
        variants=_variant_cards(manifest),
        lanes=info.lanes,
        input_format=info.input_format,
        num_users=info.num_users,
        d_model=info.d_model,
        created=created if isinstance(created, str) else None,
        metrics=dict(evaluation) if isinstance(evaluation, Mapping) else {},
    )
