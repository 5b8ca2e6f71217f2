"""What the service needs of an explainer: the three stages, its info, warm-up and close.

`explain.explainer.Explainer` is the real one. The protocol exists so that unit tests can
inject a double that produces faults and delays a real model cannot produce on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from explain.explainer import BatchGeneration, Generation, Prepared
from explain.types import ExplainJob, Explanation, ModelInfo


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    def prepare(self, job: ExplainJob) -> Prepared: ...

    def generate(self, batch: Sequence[Prepared]) -> BatchGeneration: ...

    def finish(
        self, prepared: Prepared, generation: Generation, *, last: bool = False
    ) -> Explanation: ...

    def widen(self, prepared: Prepared) -> Prepared: ...

    def warmup(self) -> None: ...
