"""Repairing the end of an append-only JSON-lines file after a crash, reading only its end."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def repair_tail(path: Path, *, chunk: int = 1 << 16) -> None:
    """Cut a torn last line off (or end a complete one with its newline), reading only the
    end of the file."""
    if not path.exists():
        return
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = size
        tail = b""
        while start > 0:  # back from the end until a newline (or the start of the file)
            start = max(0, start - chunk)
            handle.seek(start)
            tail = handle.read(size - start)
            if b"\n" in tail:
                break
        end = start + tail.rfind(b"\n") + 1  # 0 from rfind's -1 when there is none
        rest = tail[tail.rfind(b"\n") + 1 :]
        if not rest.strip():
            return
        try:
            json.loads(rest)
            repaired = rest + b"\n"  # complete but unterminated: only its newline was lost
        except ValueError:
            repaired = b""
            logger.warning("%s: ignoring a torn last line (%d bytes)", path, len(rest))
        handle.truncate(end)
        handle.seek(end)
        handle.write(repaired)
        handle.flush()
        os.fsync(handle.fileno())
