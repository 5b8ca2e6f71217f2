"""The HTTP API: `/v1/*` (behind the API key when one is set) and the operations routes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api import health, models
from service.api.deps import require_api_key
from service.api.explanations import build_explanations_router
from service.schemas import RequestModels


def build_router(request_models: RequestModels, *, auth: bool) -> APIRouter:
    """All routes of one app; `request_models` carry that app's request limits.

    Routes spell out their full paths (no router prefixes): the request metrics label a
    request with `scope["route"].path`, which is then the whole template.
    """
    # /v1/* and /admin/* need the API key when one is set; probes and /metrics never do.
    v1 = APIRouter(dependencies=[Depends(require_api_key)] if auth else [])
    v1.include_router(build_explanations_router(request_models))
    v1.include_router(models.router)
    root = APIRouter()
    root.include_router(v1)
    root.include_router(health.router)
    return root
