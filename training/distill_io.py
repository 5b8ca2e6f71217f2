"""The distilled files: JSON lines, appended per batch, a line torn by a crash repaired.

`<output>` holds the kept records and `<output>.dropped.jsonl` (`dropped_path`) the dropped
samples' ids and reasons; `distill` reads both to resume, `read_distilled` the kept ones.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.records import DistilledRecord

logger = logging.getLogger(__name__)

DROPPED_SUFFIX = ".dropped.jsonl"


class CorruptDistillFileError(ValueError):
    pass


def dropped_path(output: Path) -> Path:
    return output.with_name(output.name + DROPPED_SUFFIX)


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dump_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"


def load_jsonl(path: Path, *, repair: bool) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line is ignored (or cut off: `repair`)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is an unfinished line
    records = []
    for number, raw in enumerate(data[:end].splitlines(), 1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw))
        except ValueError as exc:
            raise CorruptDistillFileError(f"{path}:{number}: not a JSON line ({exc})") from exc
    tail = data[end:]
    if tail.strip():
        try:
            records.append(json.loads(tail))
            repaired = tail + b"\n"  # complete but unterminated: only its newline was lost
        except ValueError:
            repaired = b""
            logger.warning("%s: ignoring a torn last line (%d bytes)", path, len(tail))
        if repair:
            with path.open("r+b") as handle:
                handle.truncate(end)
                handle.seek(end)
                handle.write(repaired)
                handle.flush()
                os.fsync(handle.fileno())
    return records


def read_distilled(path: Path) -> list[DistilledRecord]:
    """The kept records of a distilled file, in file order (a torn last line is skipped)."""
    return [DistilledRecord.from_dict(raw) for raw in load_jsonl(path, repair=False)]
