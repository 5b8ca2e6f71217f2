"""What the store accepts as a model name, a version, an alias and an artifact path."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from model_store.errors import ForbiddenFileError, InvalidNameError
from model_store.manifest import MANIFEST_FILE, relpath_error

# Only formats that load without executing code. Pickle-based ones (.pkl .pickle .pt .pth
# .bin .ckpt) run arbitrary code on load, so they never enter the store.
ALLOWED_SUFFIXES = frozenset(
    {".json", ".safetensors", ".npy", ".onnx", ".onnx_data", ".data", ".txt", ".md", ".png"}
    | {".csv", ".jsonl"}
)
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Versions start with a digit and aliases with a letter, so a ref is never ambiguous.
VERSION_RE = re.compile(r"[0-9][A-Za-z0-9._-]{0,63}")
ALIAS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")


def check(kind: str, value: object, pattern: re.Pattern[str]) -> str:
    # fullmatch, not `^...$`: `$` also matches before a trailing newline.
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidNameError(f"invalid {kind} {value!r}: must match {pattern.pattern}")
    return value


def check_artifact(relpath: str) -> str:
    problem = relpath_error(relpath)
    if problem is None and relpath == MANIFEST_FILE:
        problem = "is written by the store itself"
    if problem is not None:
        raise InvalidNameError(f"invalid artifact path {relpath!r}: {problem}")
    suffix = PurePosixPath(relpath).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise ForbiddenFileError(
            f"refusing {relpath!r}: {suffix or 'no extension'} is not an allowed file type "
            f"(allowed: {' '.join(sorted(ALLOWED_SUFFIXES))})"
        )
    return relpath


def contained(version_dir: Path, relpath: str) -> Path:
    """`version_dir / relpath`, refusing a path that a symlink leads out of the version dir."""
    path = version_dir / relpath
    if not path.resolve().is_relative_to(version_dir.resolve()):
        raise InvalidNameError(f"artifact path {relpath!r} escapes {version_dir}")
    return path


def natural_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # So that 2026-12-01.10 sorts after 2026-12-01.9.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version))
