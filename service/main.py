"""The app factory: wiring only. Start with `uvicorn --factory service.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from service.api import build_router
from service.engine import Engine
from service.errors import BodySizeLimitMiddleware, install_error_handlers
from service.gpu import NvmlCollector
from service.lifespan import AppState, build_lifespan, configure_logging
from service.metrics import Metrics, RequestTelemetryMiddleware
from service.schemas import build_request_models
from service.settings import Settings


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the service. `engine` replaces loading from the model store (tests)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    metrics = Metrics(gpu_collector=NvmlCollector())
    # The settings are the request limits (`Settings` extends `RequestLimits`).
    request_models = build_request_models(settings)
    state = AppState(
        metrics=metrics,
        request_models=request_models,
        api_key=settings.api_key_value,
        request_timeout_s=settings.request_timeout_ms / 1000.0,
    )
    app = FastAPI(
        title="Prism",
        summary="Explanations for recommendations, written by a user-aware BART.",
        version="1",
        lifespan=build_lifespan(settings, state, engine),
    )
    app.state.prism = state
    install_error_handlers(app)
    app.include_router(build_router(request_models, auth=state.api_key is not None))
    # Added innermost first: telemetry wraps the body limit, so 413s are counted too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    return app
