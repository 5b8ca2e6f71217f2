"""`GET /v1/models` (what is served) and `POST /admin/reload` (hot swap)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import ServingDep, StateDep, error_responses
from service.errors import ServiceError, service_error_response
from service.schemas import ModelsResponse, ReloadResponse

router = APIRouter(tags=["models"])


class ReloadRefusedError(ServiceError):
    status_code = 409
    error_type = "reload_refused"


class ReloadUnavailableError(ServiceError):
    status_code = 409
    error_type = "reload_unavailable"


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    responses=error_responses(401, 503),
    summary="The model being served",
)
async def list_models(serving: ServingDep, state: StateDep) -> ModelsResponse:
    """Name, version, execution provider, input format, size and evaluation metrics, and
    the last reload that swapped or was refused (with its error)."""
    return ModelsResponse(models=[serving.card], last_reload=state.last_reload)


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses=error_responses(401, 409, 503),
    summary="Serve the version the model ref names now (hot swap)",
    tags=["operations"],
)
async def reload(serving: ServingDep, state: StateDep) -> ReloadResponse | JSONResponse:
    """Resolve `PRISM_MODEL_REF` again. A new version is loaded next to the current one, its
    files verified and parity required, warmed up, and swapped in between batches; requests
    in flight finish on the version they started on. A version that fails is refused (409)
    and the current one keeps serving. `prism-store promote` + reload is a rollback."""
    if state.reload is None:
        return service_error_response(
            ReloadUnavailableError("this app serves an injected explainer: nothing to reload")
        )
    result = await state.reload()
    if result.status == "refused":
        return service_error_response(
            ReloadRefusedError(
                f"kept {serving.info.name}@{result.served}: {result.error}",
                param=None,
            )
        )
    return result
