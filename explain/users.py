"""The user table W_u outside the model graph: an id index plus a memory-mapped float array.

Row 0 is the unknown user and is exactly zero, so an id the model never saw gets stock-BART
behaviour (a content-based explanation) rather than an error. Keeping the table out of the
ONNX graph lets vectors be refreshed without re-exporting, and lets it grow to millions of
rows without loading them into memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

IDS_FILE = "ids.json"
VECTORS_FILE = "vectors.npy"
UNKNOWN_ROW = 0


class UserTableError(ValueError):
    pass


def save_user_table(
    directory: Path, rows: Mapping[str, int], vectors: npt.NDArray[np.floating]
) -> None:
    """Write `ids.json` ({external id: row}) and `vectors.npy` ([num_users + 1, d_model])."""
    if vectors.ndim != 2:
        raise UserTableError(f"user vectors must be 2-D, got shape {vectors.shape}")
    if rows and (min(rows.values()) < 1 or max(rows.values()) >= vectors.shape[0]):
        raise UserTableError("user rows must lie in 1..num_users (row 0 is the unknown user)")
    if np.any(vectors[UNKNOWN_ROW] != 0):
        raise UserTableError("row 0 (the unknown user) must be exactly zero")
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / VECTORS_FILE, np.ascontiguousarray(vectors))
    payload = {"format": "prism-user-index", "version": 1, "rows": dict(rows)}
    (directory / IDS_FILE).write_text(json.dumps(payload, sort_keys=True))


class UserTable:
    def __init__(self, rows: Mapping[str, int], vectors: npt.NDArray[np.floating]) -> None:
        self._rows = dict(rows)
        self._vectors = vectors
        if vectors.ndim != 2 or vectors.shape[0] < 1:
            raise UserTableError(f"bad user table shape {vectors.shape}")

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> UserTable:
        raw = json.loads((directory / IDS_FILE).read_text())
        if raw.get("format") != "prism-user-index":
            raise UserTableError(f"{directory / IDS_FILE} is not a Prism user index")
        # allow_pickle=False: a table file can never execute code.
        vectors = np.load(
            directory / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False
        )
        return cls({str(k): int(v) for k, v in raw["rows"].items()}, vectors)

    @property
    def num_users(self) -> int:
        return int(self._vectors.shape[0]) - 1

    @property
    def d_model(self) -> int:
        return int(self._vectors.shape[1])

    def row(self, user_id: str) -> int:
        return self._rows.get(user_id, UNKNOWN_ROW)

    def lookup(self, user_ids: Sequence[str]) -> tuple[npt.NDArray[np.float32], list[bool]]:
        """Vectors [len(user_ids), d_model] as float32, and which ids were known."""
        rows = [self.row(u) for u in user_ids]
        vectors = np.asarray(self._vectors[rows], dtype=np.float32)
        return vectors, [r != UNKNOWN_ROW for r in rows]

    @property
    def vectors(self) -> npt.NDArray[np.floating]:
        return self._vectors

    def ids(self) -> list[str]:
        return sorted(self._rows, key=self._rows.__getitem__)
