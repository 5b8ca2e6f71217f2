"""Probes and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (never behind auth)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import MetricsDep, StateDep, error_responses
from service.errors import NotReadyError
from service.schemas import HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process is up, whether or not the model has loaded."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses=error_responses(503),
    summary="Readiness",
)
async def readyz(state: StateDep) -> ReadyResponse:
    """200 once the model is loaded and warm; 503 before that, and again if the runtime fails."""
    if not state.ready or state.info is None:
        raise NotReadyError(state.unready_reason())
    info = state.info
    return ReadyResponse(
        status="ready", model=ModelRef(name=info.name, version=info.version), provider=info.provider
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: MetricsDep) -> Response:
    body, content_type = registry.render()
    return Response(content=body, media_type=content_type)
