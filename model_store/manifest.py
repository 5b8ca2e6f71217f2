"""The manifest of one model version: what it is, how to feed it, and every file's checksum.

`ModelStore.publish` writes a manifest once; `ModelStore.add_artifacts` may replace it whole
(atomically). It is a strict pydantic model: a missing required key, a wrong type (no
coercion: `"64"` is not a `d_model`) or an unknown top-level key raises `ManifestError`
naming the key. Unknown keys are *rejected*, not carried along: the service acts on the
manifest, so a field written by a newer writer must not be silently ignored by an older
reader. Extensions belong in `extra`; incompatible changes bump `schema_version`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

__all__ = [
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "InputFormatRef",
    "Manifest",
    "ManifestError",
    "Parity",
    "StoreError",
    "relpath_error",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Merged key by key by `Manifest.updated` instead of replaced whole.
_MERGED_KEYS = ("eval", "extra")


class StoreError(Exception):
    """Base of every model-store error (it lives here because `manifest` is the lowest module)."""


class ManifestError(StoreError):
    """A manifest is malformed: a missing or unknown key, a wrong type, invalid JSON."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, streamed (multi-GB weights never sit in memory)."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def relpath_error(relpath: object) -> str | None:
    """Why `relpath` is not a safe path relative to a version directory, or None if it is.

    Safe means: a canonical relative POSIX path (no `//`, `./` or trailing `/`), no `..`, and
    no component starting with `.`, which the store keeps for its own temporary files.
    """
    if not isinstance(relpath, str) or not relpath:
        return "must be a non-empty string"
    if "\\" in relpath or "\0" in relpath:
        return "must be a POSIX path without backslashes or NUL"
    if relpath.startswith("/"):
        return "must be relative, not absolute"
    pure = PurePosixPath(relpath)
    if pure.as_posix() != relpath:
        return f"must be written canonically ({pure.as_posix()!r})"
    if any(part.startswith(".") for part in pure.parts):
        return "no component may be '..' or start with '.'"
    return None


def _utc_timestamp(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"must be in UTC (end in 'Z' or '+00:00'): {value!r}")
    return value


def _checked_files(files: dict[str, str]) -> dict[str, str]:
    for relpath, digest in files.items():
        problem = relpath_error(relpath)
        if problem is None and relpath == MANIFEST_FILE:
            problem = "the manifest cannot list itself"
        if problem is not None:
            raise ValueError(f"path {relpath!r} {problem}")
        if not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"{relpath!r} needs a lowercase hex sha256, got {digest!r}")
    return files


NonEmpty = Annotated[str, Field(min_length=1)]
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class InputFormatRef(BaseModel):
    """The input format shared by training and serving (`explain.input_format`)."""

    model_config = _STRICT

    name: NonEmpty
    version: int | NonEmpty
    config: dict[str, Any]


class Parity(BaseModel):
    """The parity check's result: `passed`, plus whatever the check reports (extra keys)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    passed: bool


class Variant(BaseModel):
    """A precision variant of the fp32 graphs and its gate (`training.variants`): how often it
    produced the same tokens as fp32 on the model's held-out requests, and whether every
    quality bar still passed on its answers. Only a `servable` variant may be served."""

    model_config = _STRICT

    encoder: NonEmpty  # relative paths inside the version directory
    decoder: NonEmpty
    method: NonEmpty  # how it was made, e.g. "MatMulNBits int8 (block 32) + int8 Gather"
    compared: Annotated[int, Field(ge=0)]  # requests compared against fp32
    sequences_identical: Annotated[float, Field(ge=0, le=1)]
    tokens_identical: Annotated[float, Field(ge=0, le=1)]
    bars_passed: bool | None  # None: the quality bars were not run on it
    failed_bars: list[str] = Field(default_factory=list)
    servable: bool
    reason: str = ""  # why it is not servable
    recipe: str = ""  # int8: the recipe kept (`explain.artifacts.INT8_RECIPES`)
    refused: list[str] = Field(default_factory=list)  # int8: faster recipes that failed


class Manifest(BaseModel):
    """What a version is. Every instance is validated on construction, and immutable."""

    model_config = _STRICT

    schema_version: Literal[1]
    name: NonEmpty
    version: NonEmpty
    # ISO-8601 in UTC, e.g. "2026-12-01T10:15:00.123456Z".
    created: Annotated[str, AfterValidator(_utc_timestamp)]
    # "facebook/bart-base", or the name of the offline-built default.
    base_model: NonEmpty
    input_format: InputFormatRef
    d_model: Annotated[int, Field(ge=1)]
    num_users: Annotated[int, Field(ge=0)]
    # Relative POSIX path -> sha256 hex, for every file in the version dir but manifest.json.
    files: Annotated[dict[str, str], AfterValidator(_checked_files)]
    eval: dict[str, Any] = Field(default_factory=dict)
    # None means the parity check has not run yet.
    parity: Parity | None = None
    # Token ids the decoder needs (decoder_start_token_id, eos_token_id, ...).
    generation: dict[str, int | None] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    # Precision variants by name ("int8", "fp16"); fp32 is the graphs in `onnx/` themselves.
    variants: dict[str, Variant] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _serialisable(self) -> Manifest:
        self.to_json()  # fail now, not at write time, on values JSON cannot hold
        return self

    @property
    def parity_passed(self) -> bool:
        return self.parity is not None and self.parity.passed

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    def to_json(self) -> str:
        try:
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"manifest is not JSON-serialisable: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """The one parser: every way in (JSON, files, updates) ends here."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"a manifest must be a JSON object, got {type(data).__name__}")
        try:
            # A deep copy: the manifest never shares mutable state with `data`.
            return cls.model_validate(copy.deepcopy(dict(data)))
        except ValidationError as exc:
            raise _manifest_error(exc) from None

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(
                text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_nan
            )
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_path(cls, path: Path) -> Manifest:
        """Read a manifest file; every error, I/O included, is a `ManifestError` naming the path."""
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read manifest: {exc}") from None

    def replaced(self, **changes: Any) -> Manifest:
        """A copy with `changes` (top-level keys) replaced, validated again."""
        return Manifest.from_dict({**self.to_dict(), **changes})

    def updated(self, updates: Mapping[str, Any]) -> Manifest:
        """A copy with `updates` applied: top-level keys replace, `eval` and `extra` merge."""
        data = self.to_dict()
        for key, value in updates.items():
            if key in _MERGED_KEYS and isinstance(value, Mapping):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Manifest.from_dict(data)


def _manifest_error(exc: ValidationError) -> ManifestError:
    """The first problem, naming the key: `manifest key 'd_model': ...`."""
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    # A union's branch names ("int", "str") are not keys.
    path = [p for p in loc if p not in {"int", "str", "constrained-str", "Parity"}]
    key = ".".join(path) or "manifest"
    if first["type"] == "extra_forbidden":
        return ManifestError(f"unknown manifest key {key!r}; extensions go under 'extra'")
    if first["type"] == "missing":
        return ManifestError(f"manifest is missing required key {key!r}")
    return ManifestError(f"manifest key {key!r}: {first['msg']}")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"duplicate key {key!r} in manifest JSON")
        result[key] = value
    return result


def _reject_nan(token: str) -> float:
    raise ManifestError(f"manifest JSON contains {token}, which is not valid JSON")
