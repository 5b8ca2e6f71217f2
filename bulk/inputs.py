"""A request log split into chunks that every run cuts the same way.

A chunk is a fixed range of rows: in a JSON-lines log, `count` lines from a byte `offset`;
in a Parquet log, rows `start`..`start + count` of one row group. The same file and chunk
size always give the same chunks, so chunk `k`'s output file names the same rows in every
run: that is what lets a rerun skip the chunks already written without duplicating a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


class InputFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Chunk:
    index: int
    first_row: int  # the row number (0-based, over the whole file) of the chunk's first row
    count: int
    offset: int = 0  # JSON lines: the byte offset of its first line
    row_group: int = 0  # Parquet: the row group it lies in, from `start`
    start: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "index": self.index,
            "first_row": self.first_row,
            "count": self.count,
            "offset": self.offset,
            "row_group": self.row_group,
            "start": self.start,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Chunk:
        return cls(**{k: int(raw[k]) for k in cls.__dataclass_fields__})


def _kind(path: Path) -> str:
    if path.suffix == ".parquet":
        return "parquet"
    if path.suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InputFormatError(f"{path}: expected a .parquet or .jsonl file")


def plan_chunks(path: Path, chunk_rows: int) -> list[Chunk]:
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    chunks: list[Chunk] = []
    if _kind(path) == "parquet":
        metadata = pq.ParquetFile(path).metadata
        row = 0
        for group in range(metadata.num_row_groups):
            size = metadata.row_group(group).num_rows
            for start in range(0, size, chunk_rows):
                count = min(chunk_rows, size - start)
                chunks.append(Chunk(len(chunks), row, count, row_group=group, start=start))
                row += count
        return chunks
    with path.open("rb") as handle:  # one pass, keeping only the chunks' offsets
        offset = row = count = 0
        first_offset, first_row = 0, 0
        for line in handle:
            if line.strip():
                if count == 0:
                    first_offset, first_row = offset, row
                count += 1
                row += 1
                if count == chunk_rows:
                    chunks.append(Chunk(len(chunks), first_row, count, offset=first_offset))
                    count = 0
            offset += len(line)
        if count:
            chunks.append(Chunk(len(chunks), first_row, count, offset=first_offset))
    return chunks


def read_chunk(path: Path, chunk: Chunk) -> list[Any]:
    """The chunk's rows: JSON values (a row that is not valid JSON comes back as its text)."""
    if _kind(path) == "parquet":
        group = pq.ParquetFile(path).read_row_group(chunk.row_group)
        rows: list[Any] = group.slice(chunk.start, chunk.count).to_pylist()
        return rows
    rows = []
    with path.open("rb") as handle:
        handle.seek(chunk.offset)
        while len(rows) < chunk.count:
            line = handle.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append(line.decode("utf-8", errors="replace").strip())
    return rows
