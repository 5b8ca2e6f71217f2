"""The response models (pydantic v2), the error body included."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    type: str = Field(description="A stable, machine-readable error type.", examples=["overloaded"])
    message: str = Field(description="What went wrong, for people.")
    param: str | None = Field(
        default=None,
        description="The dotted path of the offending request field, if any.",
        examples=["history.3.title"],
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelRef(BaseModel):
    name: str
    version: str


class Usage(BaseModel):
    input_tokens: int = Field(description="Encoder input tokens after truncation.")
    output_tokens: int = Field(description="Tokens generated.")
    history_used: int = Field(description="History items that fit into the input budget.")


class Timing(BaseModel):
    queue_ms: float = Field(description="Time spent waiting in the batcher's queue.")
    inference_ms: float = Field(description="Time of the batch this request ran in.")
    total_ms: float = Field(description="Time from the request's arrival to its answer.")


class ExplainResponse(BaseModel):
    explanation: str
    user_known: bool = Field(
        description="False when the user id is unknown and the explanation is content-based."
    )
    fallback: bool = Field(
        default=False,
        description="True when the model's text was unusable (no words, a slot it began but "
        "could not fill, a stutter or a loop) and a fixed evidence sentence, filled from the "
        "request, was served instead.",
    )
    fallback_reason: str | None = Field(
        default=None,
        description="Why the fallback was served: no_words, dangling_slot, stutter or looping.",
    )
    model: ModelRef
    usage: Usage
    timing: Timing


class BatchItemResult(BaseModel):
    """Exactly one of `explanation` and `error` is set."""

    explanation: ExplainResponse | None = None
    error: ErrorBody | None = None


class BatchExplainResponse(BaseModel):
    results: list[BatchItemResult] = Field(description="One result per request, in order.")


class ModelCard(BaseModel):
    name: str
    version: str
    provider: str = Field(description="The execution provider that loaded: `cuda` or `cpu`.")
    input_format: str = Field(description="`<format name>/<format version>`.")
    num_users: int
    d_model: int
    created: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation metrics.")


class ReloadResponse(BaseModel):
    """What a reload did: `swapped` to a new version, found it `unchanged`, or `refused` it
    (the version that was serving keeps serving; `error` says why)."""

    status: Literal["swapped", "unchanged", "refused"]
    served: str | None = Field(description="The version serving after the reload.")
    previous: str | None = Field(description="The version serving before it.")
    requested: str | None = Field(description="The version the served ref names now.")
    error: str | None = None
    at: str = Field(description="When, in UTC (ISO 8601).")


class ModelsResponse(BaseModel):
    models: list[ModelCard]
    last_reload: ReloadResponse | None = Field(
        default=None, description="The last reload that swapped or was refused, if any."
    )


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    model: ModelRef
    provider: str
