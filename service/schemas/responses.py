"""The response models (pydantic v2), the error body included."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from explain.verifier import PROBLEMS


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
    candidates: int = Field(
        default=1,
        description="Candidate sentences checked: 1 when the greedy answer passed; more when "
        "it failed and a beam search's n-best were checked too.",
    )


class Timing(BaseModel):
    queue_ms: float = Field(description="Time spent waiting in the batcher's queue.")
    inference_ms: float = Field(description="Time of the batch this request ran in.")
    total_ms: float = Field(description="Time from the request's arrival to its answer.")


Strength = Literal["basic", "strong"]


class SharedGenreEvidence(BaseModel):
    """The history shares one of the item's genres (basic: at least 2 films and 10 % of the
    history with known genres; strong, for words such as "clearly" or "keep coming back to":
    at least 3 films and 40 %)."""

    claim: Literal["shared_genre"]
    genre: str = Field(examples=["Horror"])
    share: str = Field(description="History films with the genre / with known genres.")
    strength: Strength
    history: list[str] = Field(description="The most recent history films with the genre.")


class EraEvidence(BaseModel):
    """The history leans to the item's decade (basic: at least 2 films and half of the dated
    history; strong: at least 3 and 60 %)."""

    claim: Literal["era"]
    decade: str = Field(examples=["1980s"])
    share: str = Field(description="History films from the decade / with a known year.")
    strength: Strength
    history: list[str] = Field(description="History films from the decade that are named.")


class TitleRef(BaseModel):
    title: str
    shared_genres: list[str] = Field(description="Genres this film shares with the item.")


class TitleEvidence(BaseModel):
    """`similar_title`: a named history film is said to be like the item (it must share a
    genre with it); `history_reference`: a named history film is only mentioned."""

    claim: Literal["similar_title", "history_reference"]
    titles: list[TitleRef]


class NoveltyEvidence(BaseModel):
    """The item is a departure: no history film shares its genres (all genres known), or
    there is no history."""

    claim: Literal["novelty"]
    genres: list[str] = Field(description="The item's genres.")
    share: str = Field(description="History films sharing one of them / with known genres.")


class ItemFactEvidence(BaseModel):
    """Something the request says about the item itself (a genre, the year)."""

    claim: Literal["item_fact"]
    genres: list[str]
    year: int | None


Evidence = Annotated[
    SharedGenreEvidence | EraEvidence | TitleEvidence | NoveltyEvidence | ItemFactEvidence,
    Field(discriminator="claim"),
]


class ExplainResponse(BaseModel):
    explanation: str
    user_known: bool = Field(
        description="False when the user id is unknown and the explanation is content-based."
    )
    evidence: list[Evidence] = Field(
        default_factory=list,
        description="What the served sentence claims and the request facts that support each "
        "claim (every claim is checked against its rule before the sentence is served).",
    )
    fallback: bool = Field(
        default=False,
        description="True when no candidate the model wrote passed the verifier and a fixed "
        "evidence sentence, filled from the request and checked by the same rules, was served.",
    )
    fallback_reason: str | None = Field(
        default=None,
        description="Why the model's first candidate was refused: " + ", ".join(PROBLEMS) + ".",
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


class VariantCard(BaseModel):
    """A precision variant's publish-time gate against the fp32 graphs."""

    servable: bool
    sequences_identical: float = Field(description="Share of answers identical to fp32's.")
    tokens_identical: float = Field(description="Share of tokens identical to fp32's.")
    compared: int = Field(description="Held-out requests compared.")
    bars_passed: bool | None = Field(
        description="Every quality bar on its answers (None: not run)."
    )
    reason: str = Field(description="Why it is not servable (empty when it is).")
    method: str = Field(default="", description="How the variant was made.")
    recipe: str = Field(
        default="",
        description="int8: the recipe its gate kept (`per-token`, `dynamic-encoder` or `blocks`).",
    )
    refused: list[str] = Field(
        default_factory=list, description="int8: faster recipes that failed the gate, and why."
    )


class ModelCard(BaseModel):
    name: str
    version: str
    provider: str = Field(description="The execution provider that loaded: `cuda` or `cpu`.")
    variant: str = Field(
        default="fp32", description="The precision variant served: `fp32`, `int8` or `fp16`."
    )
    variants: dict[str, VariantCard] = Field(
        default_factory=dict, description="Every variant the version carries, and its gate."
    )
    lanes: int = Field(
        default=1,
        description="Decode lanes: parts of a batch run side by side on CPU "
        "(`PRISM_DECODE_LANES`; 1 on a GPU).",
    )
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
