"""Encoded student examples on disk: an Arrow file, memory-mapped, read through `datasets`.

The encoding stage (student input ids, user id, target ids per distilled record) used to be
held in memory and cached as one JSON list; for 894,752 records that is gigabytes of Python
ints. Now records stream in, are encoded, and are written in record batches to an Arrow IPC
stream file (`<split>.arrow`, the format of `datasets`' own cache files, written to a
temporary name and renamed, so a crash never leaves half a file that looks whole).
`datasets.Dataset.from_file` memory-maps it: the training loop reads the rows it batches and
the operating system pages the rest in and out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa

from explain.input_format import InputConfig
from explain.tokenizer import PrismTokenizer
from explain.users import UNKNOWN_ROW
from training.batches import StudentExample
from training.examples import student_target
from training.progress import ProgressBar, summary_line
from training.records import DistilledRecord

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)
SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("user_id", pa.string()),
        ("labels", pa.list_(pa.int32())),
    ]
)


def _rows(
    records: Iterable[DistilledRecord],
    tokenizer: PrismTokenizer,
    config: InputConfig,
    max_target_tokens: int,
) -> Iterator[tuple[list[int], str, list[int]]]:
    for record in records:
        input_ids, template = student_target(record, tokenizer, config)
        labels = tokenizer.encode(template)
        if len(labels) > max_target_tokens:
            labels = [*labels[: max_target_tokens - 1], tokenizer.eos_id]
        yield input_ids, record.user_id, labels


def write_encoded(
    records: Iterable[DistilledRecord],
    tokenizer: PrismTokenizer,
    config: InputConfig,
    path: Path,
    *,
    max_target_tokens: int,
    batch_rows: int = 4096,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Encode `records` into the Arrow file `path`; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    rows = 0
    columns: tuple[list[list[int]], list[str], list[list[int]]] = ([], [], [])

    def flush(writer: pa.ipc.RecordBatchStreamWriter) -> None:
        writer.write_batch(pa.record_batch(list(columns), schema=SCHEMA))
        for column in columns:
            column.clear()

    with (
        pa.OSFile(str(partial), "wb") as sink,
        pa.ipc.new_stream(sink, SCHEMA) as writer,
        ProgressBar(f"encode {path.stem}", total, enabled=progress) as bar,
    ):
        for input_ids, user_id, labels in _rows(records, tokenizer, config, max_target_tokens):
            columns[0].append(input_ids)
            columns[1].append(user_id)
            columns[2].append(labels)
            rows += 1
            if len(columns[1]) == batch_rows:
                flush(writer)
                bar.set(rows)
        if columns[1]:
            flush(writer)
        bar.set(rows)
    os.replace(partial, path)
    logger.info(summary_line(f"encode {path.name}", rows, {}, bar.seconds))
    return rows


def load_encoded(path: Path) -> Dataset:
    """The Arrow file as a memory-mapped `datasets.Dataset` (nothing is copied into memory)."""
    from datasets import Dataset

    return Dataset.from_file(str(path))


class EncodedExamples(Sequence[StudentExample]):
    """The rows of an encoded file as `StudentExample`s, read on demand.

    `lengths` (input lengths, one small array) lets the batcher bucket by length without
    reading the rows.
    """

    def __init__(
        self, dataset: Dataset, user_rows: Mapping[str, int], *, use_users: bool = True
    ) -> None:
        self._table: Any = dataset.data  # a memory-mapped pyarrow table
        self._rows = user_rows
        self._use_users = use_users
        ids = self._table.column("input_ids")
        self.lengths = np.asarray(pa.compute.list_value_length(ids).to_numpy(zero_copy_only=False))

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def _example(self, index: int) -> StudentExample:
        row = self._table.slice(index, 1).to_pylist()[0]
        user = self._rows.get(row["user_id"], UNKNOWN_ROW) if self._use_users else UNKNOWN_ROW
        return StudentExample(row["input_ids"], user, row["labels"])

    @overload
    def __getitem__(self, index: int) -> StudentExample: ...

    @overload
    def __getitem__(self, index: slice) -> list[StudentExample]: ...

    def __getitem__(self, index: int | slice) -> StudentExample | list[StudentExample]:
        if isinstance(index, slice):
            return [self._example(k) for k in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._example(index)
