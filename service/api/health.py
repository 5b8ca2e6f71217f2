"""Probes and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (never behind auth)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import MetricsDep, StateDep, error_responses
from service.errors import NotReadyError, ServiceError
from service.schemas import HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["operations"])


class NotLiveError(ServiceError):
    status_code = 503
    error_type = "not_live"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


@router.get(
    "/healthz", response_model=HealthResponse, responses=error_responses(503), summary="Liveness"
)
async def healthz(state: StateDep) -> HealthResponse:
    """200 while the process can still serve, loading included. 503 only when a restart is
    the cure: the inference worker died, an inference call hangs past
    `PRISM_INFERENCE_WATCHDOG_S`, or the runtime has failed (and failed its self-probes) for
    longer than `PRISM_UNHEALTHY_RESTART_S`. Cheap: it never waits for the model."""
    live, why = state.liveness()
    if not live:
        raise NotLiveError(why)
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses=error_responses(503),
    summary="Readiness",
)
async def readyz(state: StateDep) -> ReadyResponse:
    """200 once the model is loaded and warm; 503 (with `Retry-After`) before that, while
    the runtime fails (it probes itself and comes back), and while draining."""
    serving = state.serving
    if not state.ready or serving is None:
        raise NotReadyError(state.unready_reason())
    info = serving.info
    return ReadyResponse(
        status="ready", model=ModelRef(name=info.name, version=info.version), provider=info.provider
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: MetricsDep) -> Response:
    body, content_type = registry.render()
    return Response(content=body, media_type=content_type)
