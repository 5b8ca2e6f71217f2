"""Progress of a long job: rows done, rows/s and ETA while it runs, one summary line at the end.

A thin layer over tqdm, so every job reports the same way: `set` moves the bar to a count
(the caller knows its own count; answers arriving out of order make increments awkward),
`note` shows the current tallies, and `summary_line` formats the line a job ends with.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from types import TracebackType

from tqdm import tqdm


class ProgressBar:
    def __init__(self, desc: str, total: int | None, *, enabled: bool = True) -> None:
        self.started = time.perf_counter()
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="row",
            disable=not enabled,
            mininterval=1.0,
            smoothing=0.1,
            file=sys.stderr,
        )

    def set(self, done: int) -> None:
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def note(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.close()


def summary_line(job: str, kept: int, dropped: Mapping[str, int], seconds: float) -> str:
    """`distill: kept 10, dropped 3 (empty 1, too_long 2), 4.2 s (3 rows/s)`."""
    total = sum(dropped.values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v)
    detail = f" ({reasons})" if reasons else ""
    rate = (kept + total) / seconds if seconds > 0 else 0.0
    return f"{job}: kept {kept}, dropped {total}{detail}, {seconds:.1f} s ({rate:.0f} rows/s)"
