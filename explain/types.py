"""The value objects of one explanation: the job going in, the explanation coming out.

They are plain dataclasses, kept apart from the HTTP schemas: the service converts its
validated request into an `ExplainJob`, and evaluation, parity, benchmarks and the bulk job
build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explain.items import Item


@dataclass(frozen=True)
class ExplainJob:
    """One request, validated and normalised (user ids are strings).

    `max_new_tokens` and `num_beams` left at None take the explainer's decode settings.
    """

    user_id: str
    history: tuple[Item, ...]
    item: Item
    max_new_tokens: int | None = None
    num_beams: int | None = None


@dataclass(frozen=True)
class Explanation:
    text: str  # what is served: the model's sentence, or the evidence sentence on fallback
    user_known: bool
    input_tokens: int
    output_tokens: int
    history_used: int
    token_ids: tuple[int, ...] = ()  # the chosen candidate's tokens (forced BOS and EOS too)
    # Why the model's text was unusable (`explain.checks.DEFECTS`), in which case the
    # evidence sentence was served; None for the model's own text.
    fallback_reason: str | None = None
    template: str = ""  # the model's slot template (the chosen candidate, or the first one)
    model_text: str = ""  # that template filled, even when it was not served (evaluation)
    unfilled: tuple[str, ...] = ()  # slots the template used that the request cannot fill
    served_template: str = ""  # the template of what is served (the evidence sentence's)
    candidates_tried: int = 1  # candidates checked before one passed (or all failed)
    # What the served sentence relies on (`explain.verifier.claim_evidence`).
    evidence: tuple[dict[str, Any], ...] = ()
    # The greedy answer failed the checks: `Explainer.widen` it and finish again.
    retry: bool = False

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    provider: str  # the execution provider that really loaded: "cuda" or "cpu"
    input_format: str  # "<format name>/<format version>"
    num_users: int
    d_model: int
    variant: str = "fp32"  # the precision variant served (`explain.loading.choose_variant`)
    lanes: int = 1  # decode lanes (`explain.lanes`): 1 on a GPU whatever was asked
