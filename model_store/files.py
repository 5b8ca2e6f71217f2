"""Crash-safe file operations for the store: durable copies and writes, and the model lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from model_store.errors import ForbiddenFileError, InvalidNameError, StoreError
from model_store.manifest import sha256_file
from model_store.names import check_artifact, contained

_CHUNK_BYTES = 1 << 20


def fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_hashed(source: Path, target: Path) -> str:
    """Copy and hash in one pass, fsync the copy; `x` mode so nothing is ever overwritten."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("xb") as dst:
        while chunk := src.read(_CHUNK_BYTES):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def write_new(path: Path, text: str) -> None:
    with path.open("x", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a torn one: tmp + fsync + os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        write_new(tmp, text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def scan_source(source_dir: Path) -> list[tuple[str, Path]]:
    """The (artifact path, file) pairs under `source_dir`, sorted; refuses what may not enter."""
    if not source_dir.is_dir():
        raise StoreError(f"source {source_dir} is not a directory")
    found: list[tuple[str, Path]] = []
    # os.walk does not follow symlinks; they are refused, so nothing outside is copied.
    for directory, dirnames, filenames in os.walk(source_dir):
        for entry in sorted([*dirnames, *filenames]):
            path = Path(directory) / entry
            relpath = path.relative_to(source_dir).as_posix()
            if path.is_symlink():
                raise ForbiddenFileError(f"refusing {relpath!r}: symlinks are not published")
            if entry in filenames:
                if not path.is_file():
                    raise ForbiddenFileError(f"refusing {relpath!r}: not a regular file")
                found.append((check_artifact(relpath), path))
    if not found:
        raise StoreError(f"source {source_dir} holds no files")
    return sorted(found)


def checksum_problems(version_dir: Path, files: Mapping[str, str]) -> list[str]:
    """What is wrong with the listed files (relative path -> sha256) under `version_dir`."""
    problems = []
    for relpath, expected in sorted(files.items()):
        try:
            path = contained(version_dir, relpath)
        except InvalidNameError as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            problems.append(f"{relpath}: missing")
        elif (actual := sha256_file(path)) != expected:
            problems.append(
                f"{relpath}: altered (sha256 {actual[:12]}..., manifest {expected[:12]}...)"
            )
    return problems


@contextmanager
def locked(lock_file: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an advisory `flock` on `lock_file` (created if missing): exclusive or shared.

    An exclusive lock creates the lock file's directory first; a shared one that cannot
    open the file goes on without a lock.
    """
    if not shared:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd: int | None = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        fd = None  # a read-only store (a mounted volume) has no writers to exclude
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
