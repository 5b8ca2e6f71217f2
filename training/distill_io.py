"""The distilled files: JSON lines, appended per batch, a line torn by a crash repaired.

`<output>` holds the kept records and `<output>.dropped.jsonl` (`dropped_path`) the dropped
samples' ids and reasons; `distill` reads both to resume, `read_distilled` the kept ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.item_table import ItemTable, items_path
from training.jsonl_tail import repair_tail
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


def iter_distilled(path: Path) -> Iterator[DistilledRecord]:
    """The kept records of a distilled file, one at a time, in file order (a torn last line
    is skipped); items are resolved through the table beside the file."""
    if not path.exists():
        return
    table = ItemTable(items_path(path)) if items_path(path).exists() else None
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                if not line.endswith(b"\n"):
                    return  # a line torn by a crash: not a record
                raise CorruptDistillFileError(f"{path}:{number}: not a JSON line ({exc})") from exc
            yield DistilledRecord.from_dict(raw, table)


def shard_path(directory: Path, split: str, shard: int) -> Path:
    return directory / f"{split}.shard-{shard:03d}.jsonl"


def split_files(directory: Path, split: str) -> list[Path]:
    """A split's distilled files: `<split>.jsonl` from one process, and/or its shards."""
    whole = directory / f"{split}.jsonl"
    shard = re.compile(rf"{re.escape(split)}\.shard-\d+\.jsonl")
    shards = sorted(p for p in directory.glob(f"{split}.shard-*") if shard.fullmatch(p.name))
    return ([whole] if whole.exists() else []) + shards


def iter_split(directory: Path, split: str) -> Iterator[DistilledRecord]:
    """Every record of a split, file after file."""
    for path in split_files(directory, split):
        yield from iter_distilled(path)


def read_distilled(path: Path) -> list[DistilledRecord]:
    """`iter_distilled` as a list: for the small files (evaluation, tests)."""
    return list(iter_distilled(path))


_ID_PREFIX = b'{"id": "'


def iter_ids(path: Path) -> Iterator[str]:
    """The `id` of every complete line, without parsing the rest of it."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith(b"\n"):
                return  # a torn last line: not done
            if line.startswith(_ID_PREFIX):
                end = line.find(b'"', len(_ID_PREFIX))
                yield line[len(_ID_PREFIX) : end].decode()
            elif line.strip():
                try:
                    yield str(json.loads(line)["id"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise CorruptDistillFileError(f"{path}:{number}: no id ({exc!r})") from exc


def id_key(sample_id: str) -> int:
    """A 64-bit key: the id itself when it is 16 hex digits (`Sample.sample_id`), else a hash."""
    if len(sample_id) == 16:
        try:
            return int(sample_id, 16)
        except ValueError:
            pass
    return int.from_bytes(hashlib.blake2b(sample_id.encode(), digest_size=8).digest(), "big")


def _sorted_keys(path: Path) -> np.ndarray[Any, np.dtype[np.uint64]]:
    keys = np.fromiter((id_key(i) for i in iter_ids(path)), dtype=np.uint64)
    keys.sort()
    return keys


Status = Literal["kept", "dropped", "new"]


class DoneIds:
    """What resuming needs to know: which sample ids are done, in 8 bytes per id.

    The files' ids are read line by line into sorted `uint64` arrays (8 MB per million
    lines; the lines themselves are never held); ids met during this run go into a set.
    """

    def __init__(
        self,
        kept: np.ndarray[Any, np.dtype[np.uint64]],
        dropped: np.ndarray[Any, np.dtype[np.uint64]],
    ) -> None:
        self._kept = kept
        self._dropped = dropped
        self._new: set[int] = set()

    @classmethod
    def read(cls, kept_path: Path, dropped_file: Path) -> DoneIds:
        for path in (kept_path, dropped_file):
            repair_tail(path)
        return cls(_sorted_keys(kept_path), _sorted_keys(dropped_file))

    @property
    def kept(self) -> int:
        return int(self._kept.size)

    @staticmethod
    def _has(keys: np.ndarray[Any, np.dtype[np.uint64]], key: int) -> bool:
        at = int(np.searchsorted(keys, np.uint64(key)))
        return at < keys.size and int(keys[at]) == key

    def claim(self, sample_id: str) -> Status | None:
        """None the first time an undone id is met (it is then to do); else why it is not."""
        key = id_key(sample_id)
        if key in self._new:
            return "new"
        self._new.add(key)
        if self._has(self._kept, key):
            return "kept"
        if self._has(self._dropped, key):
            return "dropped"
        return None
