"""`GET /v1/models`: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ModelCardDep, error_responses
from service.schemas import ModelsResponse

router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    responses=error_responses(401, 503),
    summary="The model being served",
)
async def list_models(card: ModelCardDep) -> ModelsResponse:
    """Name, version, execution provider, input format, size and evaluation metrics."""
    return ModelsResponse(models=[card])
