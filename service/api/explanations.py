"""`POST /v1/explanations` and `POST /v1/explanations/batch` (a slate)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from fastapi import APIRouter, Response
from pydantic import TypeAdapter, ValidationError

from explain.errors import PrepareError
from explain.explainer import Prepared
from explain.types import Explanation, ModelInfo
from service.api.deps import (
    BatcherDep,
    DeadlineDep,
    ServingDep,
    StateDep,
    bind_body,
    error_responses,
)
from service.batching import DynamicBatcher, Generated
from service.errors import (
    BatchFailedError,
    DeadlineExceededError,
    InvalidRequestError,
    NotReadyError,
    OverloadedError,
    RequestFailedError,
    ServiceError,
    validation_error_body,
)
from service.schemas import (
    BatchExplainRequest,
    BatchExplainResponse,
    BatchItemResult,
    ErrorBody,
    Evidence,
    ExplainRequest,
    ExplainResponse,
    ModelRef,
    RequestModels,
    Timing,
    Usage,
)
from service.state import AppState, Serving

logger = logging.getLogger(__name__)
EVIDENCE: TypeAdapter[Evidence] = TypeAdapter(Evidence)
ERRORS = (400, 401, 413, 422, 500, 503, 504)
SECOND_PASS_MARGIN_S = 0.05  # a skipped second pass still answers before the deadline


def build_explanations_router(models: RequestModels) -> APIRouter:
    router = APIRouter(tags=["explanations"])

    async def explain(
        body: ExplainRequest,
        serving: ServingDep,
        batcher: BatcherDep,
        deadline: DeadlineDep,
        state: StateDep,
        response: Response,
    ) -> ExplainResponse:
        """Explain why `recommended_item` suits this user, in one or two sentences."""
        started = time.monotonic()
        done = await _explain(body, serving, batcher, state, deadline)
        result = _response(*done, serving.info, started)
        response.headers["Server-Timing"] = server_timing(result.timing)
        return result

    async def explain_batch(
        body: BatchExplainRequest,
        serving: ServingDep,
        batcher: BatcherDep,
        deadline: DeadlineDep,
        state: StateDep,
        response: Response,
    ) -> BatchExplainResponse:
        """Explain a slate: every request is batched with the others; results come back in
        order, and each carries its own error (an invalid entry, a failed batch, a deadline)
        instead of failing the slate."""
        started = time.monotonic()

        async def one(raw: object) -> BatchItemResult:
            try:
                request = models.explain.model_validate(raw)
            except ValidationError as exc:
                return BatchItemResult(error=validation_error_body(exc.errors()))
            try:
                done = await _explain(request, serving, batcher, state, deadline)
            except ServiceError as exc:
                return BatchItemResult(error=exc.body())
            except Exception:
                logger.exception("a slate item failed")
                return BatchItemResult(
                    error=ErrorBody(type="internal_error", message="internal server error")
                )
            return BatchItemResult(explanation=_response(*done, serving.info, started))

        # The entries are prepared concurrently and usually land in one batch.
        results = await asyncio.gather(*(one(r) for r in body.requests))
        served = [r.explanation.timing for r in results if r.explanation is not None]
        response.headers["Server-Timing"] = server_timing(
            Timing(
                queue_ms=max((t.queue_ms for t in served), default=0.0),
                inference_ms=max((t.inference_ms for t in served), default=0.0),
                total_ms=_ms(time.monotonic() - started),
            )
        )
        return BatchExplainResponse(results=list(results))

    router.add_api_route(
        "/v1/explanations",
        bind_body(explain, models.explain),
        methods=["POST"],
        response_model=ExplainResponse,
        responses=error_responses(*ERRORS),
        summary="Explain one recommendation",
    )
    router.add_api_route(
        "/v1/explanations/batch",
        bind_body(explain_batch, models.batch),
        methods=["POST"],
        response_model=BatchExplainResponse,
        responses=error_responses(*ERRORS),
        summary="Explain a slate of recommendations",
    )
    return router


async def _explain(
    request: ExplainRequest,
    serving: Serving,
    batcher: DynamicBatcher,
    state: AppState,
    deadline: float,
) -> tuple[Explanation, Generated]:
    """prepare (this request alone) -> the batch -> finish (this request alone), and a
    second pass with more candidates when the first answer fails the verifier.

    A failure in `prepare` or `finish` is this request's error and never its batch-mates';
    neither counts against readiness. The whole request runs on `serving`'s explainer."""
    loop = asyncio.get_running_loop()
    metrics, engine = state.metrics, serving.engine
    job = request.to_job()
    started = time.perf_counter()
    try:
        prepared = await loop.run_in_executor(state.workers, engine.prepare, job)
    except PrepareError as exc:
        raise InvalidRequestError(str(exc)) from None
    except Exception:
        logger.exception("preparing a request failed")
        raise RequestFailedError("this request could not be prepared") from None
    metrics.request_stage("prepare", time.perf_counter() - started)
    generated = await batcher.submit(prepared, deadline, engine)
    explanation = await _finish(state, engine.finish, prepared, generated.generation)
    if explanation.retry:
        explanation, generated = await _second_pass(
            prepared, generated, serving, batcher, state, deadline
        )
    metrics.explained(explanation)
    return explanation, generated


async def _finish(
    state: AppState, finish: Callable[..., Explanation], *args: object, last: bool = False
) -> Explanation:
    started = time.perf_counter()
    try:
        explanation = await asyncio.get_running_loop().run_in_executor(
            state.workers, functools.partial(finish, *args, last=last)
        )
    except Exception:
        logger.exception("finishing a request failed")
        raise RequestFailedError("this request's answer could not be written") from None
    state.metrics.request_stage("finish", time.perf_counter() - started)
    return explanation


async def _second_pass(
    prepared: Prepared,
    first: Generated,
    serving: Serving,
    batcher: DynamicBatcher,
    state: AppState,
    deadline: float,
) -> tuple[Explanation, Generated]:
    """The greedy answer failed the verifier: decode again with beam search and keep its
    n-best. Optional work: when it cannot run in time (or at all), the request is answered
    from the first pass (the evidence sentence), a little before its deadline."""
    engine = serving.engine
    wider = engine.widen(prepared)
    try:
        second = await batcher.submit(wider, deadline - SECOND_PASS_MARGIN_S, engine, optional=True)
    except (DeadlineExceededError, OverloadedError, NotReadyError, BatchFailedError) as exc:
        state.metrics.second_pass("skipped")
        logger.info("second pass skipped: %s", exc.message)
        return await _finish(state, engine.finish, prepared, first.generation, last=True), first
    explanation = await _finish(state, engine.finish, wider, second.generation)
    state.metrics.second_pass("fallback" if explanation.fallback else "served")
    both = Generated(
        second.generation, first.queue_s + second.queue_s, first.inference_s + second.inference_s
    )
    return explanation, both


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _response(
    explanation: Explanation, done: Generated, info: ModelInfo, started: float
) -> ExplainResponse:
    return ExplainResponse(
        explanation=explanation.text,
        user_known=explanation.user_known,
        evidence=[EVIDENCE.validate_python(e) for e in explanation.evidence],
        fallback=explanation.fallback,
        fallback_reason=explanation.fallback_reason,
        model=ModelRef(name=info.name, version=info.version),
        usage=Usage(
            input_tokens=explanation.input_tokens,
            output_tokens=explanation.output_tokens,
            history_used=explanation.history_used,
            candidates=explanation.candidates_tried,
        ),
        timing=Timing(
            queue_ms=_ms(done.queue_s),
            inference_ms=_ms(done.inference_s),
            total_ms=_ms(time.monotonic() - started),
        ),
    )


def server_timing(timing: Timing) -> str:
    return (
        f"queue;dur={timing.queue_ms:.3f}, inference;dur={timing.inference_ms:.3f}, "
        f"total;dur={timing.total_ms:.3f}"
    )
