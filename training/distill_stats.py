"""The tallies of one distillation run: kept, dropped by reason, skipped, and its time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DistillStats:
    """Counts of one run. `existing` lines were in the file before it started."""

    kept: int = 0
    errors: int = 0
    empty: int = 0
    degenerate: int = 0
    hallucinated: int = 0  # samples dropped for naming a catalogue title outside the request
    unslotted: int = 0  # samples dropped for naming a history title the student has no slot for
    ambiguous: int = 0  # a one-word title ("Up", "Her") only occurs as an ordinary word
    skipped_existing: int = 0
    skipped_dropped: int = 0
    duplicates: int = 0  # sample ids seen twice in the input
    hallucinated_titles: int = 0  # invented title mentions seen, over all samples
    invented: Counter[str] = field(default_factory=Counter)  # which titles were invented
    too_long: int = 0  # samples whose prompt does not fit the teacher even with no history
    existing: int = 0
    seconds: float = 0.0

    @property
    def dropped(self) -> int:
        return (
            self.empty
            + self.degenerate
            + self.hallucinated
            + self.unslotted
            + self.ambiguous
            + self.too_long
        )

    def summary(self) -> str:
        return (
            f"kept {self.kept} (+{self.existing} already there), errors {self.errors}, "
            f"dropped {self.dropped} (empty {self.empty}, degenerate {self.degenerate}, "
            f"hallucinated {self.hallucinated}, unslotted {self.unslotted}, ambiguous "
            f"{self.ambiguous}, too_long {self.too_long}), skipped "
            f"{self.skipped_existing + self.skipped_dropped}, duplicates {self.duplicates}, "
            f"{self.seconds:.1f} s"
        )
