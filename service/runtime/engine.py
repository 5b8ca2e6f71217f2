"""The contract between the HTTP layer (through the batcher) and the inference runtime.

The batcher hands `explain_batch` a list of validated jobs and gets back one `Explanation` per
job, in order. The call blocks (it runs on the batcher's worker thread) and raises on a
failure of the whole batch; the batcher then fails exactly that batch's requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from model_store.items import Item


@dataclass(frozen=True)
class ExplainJob:
    """One request, validated and normalised (user ids are strings)."""

    user_id: str
    history: tuple[Item, ...]
    item: Item
    max_new_tokens: int
    num_beams: int


@dataclass(frozen=True)
class Explanation:
    text: str
    user_known: bool
    input_tokens: int
    output_tokens: int
    history_used: int
    token_ids: tuple[int, ...] = ()  # what the decoder generated (forced BOS and EOS included)
    # Why the model's template was unusable (`model_store.quality.DEFECTS`), in which case
    # the evidence sentence was served; None for the model's own text.
    fallback_reason: str | None = None

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


@dataclass(frozen=True)
class BatchTimings:
    """Seconds spent on the whole batch, per stage."""

    prepare_s: float
    encode_s: float
    decode_s: float
    total_s: float


@dataclass(frozen=True)
class BatchOutput:
    results: list[Explanation]
    timings: BatchTimings


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    provider: str  # the execution provider that really loaded: "cuda" or "cpu"
    input_format: str  # "<format name>/<format version>"
    num_users: int
    d_model: int


class ExplanationEngine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    def explain_batch(self, jobs: Sequence[ExplainJob]) -> BatchOutput: ...

    def warmup(self) -> None: ...

    def close(self) -> None: ...
