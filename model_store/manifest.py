"""The manifest of one model version: what it is, how to feed it, and every file's checksum.

`ModelStore.publish` writes a manifest once; `ModelStore.add_artifacts` may replace it whole
(atomically). Parsing is strict: a missing required key, a wrong type or an unknown top-level
key raises `ManifestError` naming the key. Unknown keys are *rejected*, not carried along:
the service acts on the manifest, so a field written by a newer writer must not be silently
ignored by an older reader. Extensions belong in `extra`; incompatible changes bump
`schema_version`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "Manifest",
    "ManifestError",
    "StoreError",
    "relpath_error",
    "sha256_file",
]

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
_CHUNK_BYTES = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Keys that may be absent from a manifest file (the dataclass defaults apply).
_OPTIONAL_KEYS = frozenset({"eval", "parity", "generation", "extra"})
# Merged key by key by `Manifest.updated` instead of replaced whole.
_MERGED_KEYS = ("eval", "extra")


class StoreError(Exception):
    """Base of every model-store error (it lives here because `manifest` is the lowest module)."""


class ManifestError(StoreError):
    """A manifest is malformed: a missing or unknown key, a wrong type, invalid JSON."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


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


def _fail(key: str, problem: str) -> ManifestError:
    return ManifestError(f"manifest key {key!r}: {problem}")


def _check_int(key: str, value: object, minimum: int) -> None:
    # bool is an int subclass, and `"d_model": true` is a bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(key, f"expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise _fail(key, f"must be >= {minimum}, got {value}")


def _check_str(key: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(key, f"expected a non-empty string, got {type(value).__name__}")


def _check_dict(key: str, value: object) -> None:
    if not isinstance(value, dict):
        raise _fail(key, f"expected an object, got {type(value).__name__}")
    # JSON turns other key types into strings, so they would not survive a round trip.
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise _fail(key, f"object keys must be strings, got {bad[0]!r}")


def _check_created(value: object) -> None:
    _check_str("created", value)
    assert isinstance(value, str)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _fail("created", f"not an ISO-8601 timestamp: {value!r}") from None
    if moment.utcoffset() != timedelta(0):
        raise _fail("created", f"must be in UTC (end in 'Z' or '+00:00'): {value!r}")


def _check_input_format(value: object) -> None:
    _check_dict("input_format", value)
    assert isinstance(value, dict)
    for sub in ("name", "version", "config"):
        if sub not in value:
            raise _fail("input_format", f"missing key {sub!r}")
    _check_str("input_format.name", value["name"])
    version = value["version"]
    if isinstance(version, bool) or not isinstance(version, int | str) or version == "":
        raise _fail("input_format.version", "expected an integer or a non-empty string")
    _check_dict("input_format.config", value["config"])


def _check_files(value: object) -> None:
    _check_dict("files", value)
    assert isinstance(value, dict)
    for relpath, digest in value.items():
        problem = relpath_error(relpath)
        if problem is None and relpath == MANIFEST_FILE:
            problem = "the manifest cannot list itself"
        if problem is not None:
            raise _fail("files", f"path {relpath!r} {problem}")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise _fail("files", f"{relpath!r} needs a lowercase hex sha256, got {digest!r}")


def _check_parity(value: object) -> None:
    if value is None:
        return
    _check_dict("parity", value)
    assert isinstance(value, dict)
    if not isinstance(value.get("passed"), bool):
        raise _fail("parity", "needs a boolean 'passed' (or use null for 'not run yet')")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ManifestError(f"duplicate key {key!r} in manifest JSON")
        result[key] = value
    return result


def _reject_nan(token: str) -> float:
    raise ManifestError(f"manifest JSON contains {token}, which is not valid JSON")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What a version is. Every instance is validated on construction (see the module docstring).

    The dict fields are plain dicts so that they serialise as they are; treat them as
    read-only and derive changed manifests with `updated` or `dataclasses.replace`.
    """

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    # ISO-8601 in UTC, e.g. "2026-12-01T10:15:00.123456Z".
    created: str
    # "facebook/bart-base", or the name of the offline-built default.
    base_model: str
    # {"name", "version", "config", ...}: the input format shared by training and serving.
    input_format: dict[str, Any]
    d_model: int
    num_users: int
    # Relative POSIX path -> sha256 hex, for every file in the version dir but manifest.json.
    files: dict[str, str]
    eval: dict[str, Any] = field(default_factory=dict)
    # At least {"passed": bool}; None means the parity check has not run yet.
    parity: dict[str, Any] | None = None
    # Token ids the decoder needs (decoder_start_token_id, eos_token_id, ...).
    generation: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_int("schema_version", self.schema_version, 1)
        if self.schema_version != SCHEMA_VERSION:
            raise _fail(
                "schema_version",
                f"{self.schema_version} is not supported (this code reads {SCHEMA_VERSION})",
            )
        for key in ("name", "version", "base_model"):
            _check_str(key, getattr(self, key))
        _check_created(self.created)
        _check_input_format(self.input_format)
        _check_int("d_model", self.d_model, 1)
        _check_int("num_users", self.num_users, 0)
        _check_files(self.files)
        for key in ("eval", "generation", "extra"):
            _check_dict(key, getattr(self, key))
        _check_parity(self.parity)
        self.to_json()  # fail now, not at write time, on values JSON cannot hold

    @property
    def parity_passed(self) -> bool:
        return self.parity is not None and self.parity.get("passed") is True

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        try:
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"manifest is not JSON-serialisable: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping):
            raise ManifestError(f"a manifest must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"unknown manifest key(s) {unknown}; extensions go under 'extra'")
        missing = sorted(known - _OPTIONAL_KEYS - set(data))
        if missing:
            raise ManifestError(f"manifest is missing required key(s) {missing}")
        # Deep copy so that the manifest never shares mutable state with the caller.
        return cls(**copy.deepcopy(dict(data)))

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

    def updated(self, updates: Mapping[str, Any]) -> Manifest:
        """A copy with `updates` applied: top-level keys replace, `eval` and `extra` merge."""
        data = self.to_dict()
        for key, value in updates.items():
            if key in _MERGED_KEYS and isinstance(value, Mapping):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Manifest.from_dict(data)
