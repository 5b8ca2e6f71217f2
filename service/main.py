"""The app factory: wiring only. Start with `uvicorn --factory service.main:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from service.admission import AdmissionMiddleware
from service.api import build_router
from service.engine import Engine
from service.errors import BodySizeLimitMiddleware, install_error_handlers
from service.gpu import NvmlCollector
from service.lifespan import build_lifespan
from service.logs import configure_logging
from service.metrics import Metrics
from service.schemas import build_request_models
from service.settings import Settings
from service.state import AppState, Policy
from service.telemetry import RequestTelemetryMiddleware


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the service. `engine` replaces loading from the model store (tests)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    metrics = Metrics(gpu_collector=NvmlCollector())
    # The settings are the request limits (`Settings` extends `RequestLimits`).
    request_models = build_request_models(settings)
    policy = Policy(
        request_timeout_s=settings.request_timeout_ms / 1000.0,
        max_concurrent=settings.max_concurrent_requests,
        max_queue_wait_s=settings.max_queue_wait_ms / 1000.0,
        watchdog_s=settings.inference_watchdog_s,
        unhealthy_restart_s=settings.unhealthy_restart_s,
    )
    state = AppState(
        metrics=metrics,
        request_models=request_models,
        api_key=settings.api_key_value,
        policy=policy,
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
    # Added innermost first. Telemetry is outermost: it stamps the arrival (the deadline
    # counts from there) and counts every response, 413s and admission 503s included.
    # Admission comes before the body limit: overload is refused before any byte is read.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AdmissionMiddleware, state=state)
    app.add_middleware(RequestTelemetryMiddleware, metrics=metrics)
    return app
