"""Versioned, checksummed model storage with aliases. See `ModelStore`."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from model_store.manifest import (
    MANIFEST_FILE,
    SCHEMA_VERSION,
    Manifest,
    ManifestError,
    StoreError,
    relpath_error,
    sha256_file,
)

__all__ = [
    "ALLOWED_SUFFIXES",
    "ArtifactNotFoundError",
    "ForbiddenFileError",
    "IntegrityError",
    "InvalidNameError",
    "ManifestError",
    "ModelStore",
    "ModelVersion",
    "PromotionError",
    "StoreError",
    "VersionExistsError",
    "VersionNotFoundError",
]

# Only formats that load without executing code. Pickle-based ones (.pkl .pickle .pt .pth
# .bin .ckpt) run arbitrary code on load, so they never enter the store.
ALLOWED_SUFFIXES = frozenset(
    {".json", ".safetensors", ".npy", ".onnx", ".onnx_data", ".data", ".txt", ".md", ".png"}
    | {".csv", ".jsonl"}
)
ALIASES_FILE = "aliases.json"
LOCK_FILE = ".lock"
LATEST = "latest"
PRODUCTION = "production"
# Where re-exported artifacts live: the only files that `add_artifacts` may replace.
ONNX_DIR = "onnx/"
# The store computes these itself; a caller supplying them would make the manifest lie.
STORE_OWNED_KEYS = frozenset({"schema_version", "name", "version", "created", "files"})
_CHUNK_BYTES = 1 << 20
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Versions start with a digit and aliases with a letter, so a ref is never ambiguous.
_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9._-]{0,63}")
_ALIAS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")


class IntegrityError(StoreError):
    """A version's files do not match its manifest (missing, altered, misplaced)."""


class VersionNotFoundError(StoreError):
    """An unknown model, version or alias; the message lists what exists."""


class VersionExistsError(StoreError):
    """Publishing a version that already exists: versions are immutable."""


class InvalidNameError(StoreError):
    """A model name, version, alias or artifact path that is malformed or escapes the store."""


class ForbiddenFileError(StoreError):
    """A file the store refuses to hold: a disallowed type, a symlink, a special file."""


class PromotionError(StoreError):
    """A promotion to `production` without a passing parity check."""


class ArtifactNotFoundError(StoreError):
    """`ModelVersion.file` asked for a path that the (verified) manifest does not list."""


def _check(kind: str, value: object, pattern: re.Pattern[str]) -> str:
    # fullmatch, not `^...$`: `$` also matches before a trailing newline.
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidNameError(f"invalid {kind} {value!r}: must match {pattern.pattern}")
    return value


def _check_artifact(relpath: str) -> str:
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


def _contained(version_dir: Path, relpath: str) -> Path:
    """`version_dir / relpath`, refusing a path that a symlink leads out of the version dir."""
    path = version_dir / relpath
    if not path.resolve().is_relative_to(version_dir.resolve()):
        raise InvalidNameError(f"artifact path {relpath!r} escapes {version_dir}")
    return path


def _fsync_dir(path: Path) -> None:
    # A rename or a new file is durable only once its directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_hashed(source: Path, target: Path) -> str:
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


def _write_new(path: Path, text: str) -> None:
    with path.open("x", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a torn one: tmp + fsync + os.replace."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        _write_new(tmp, text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _natural_key(version: str) -> tuple[tuple[int, int | str], ...]:
    # So that 2026-12-01.10 sorts after 2026-12-01.9.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version))


@dataclass(frozen=True)
class ModelVersion:
    """A version whose listed files all matched their checksums when it was resolved."""

    name: str
    version: str
    path: Path
    manifest: Manifest

    def file(self, relpath: str) -> Path:
        """The path of a listed file; unlisted paths are refused, as they were never verified."""
        if relpath not in self.manifest.files:
            listed = ", ".join(sorted(self.manifest.files)) or "none"
            raise ArtifactNotFoundError(
                f"{self.name}@{self.version} lists no file {relpath!r} (it lists: {listed})"
            )
        return self.path / relpath

    def has_file(self, relpath: str) -> bool:
        return relpath in self.manifest.files


class ModelStore:
    """Immutable, checksummed model versions under `root`, plus movable aliases per model.

    Layout: `<root>/<name>/<version>/` (manifest.json and the artifacts) and
    `<root>/<name>/aliases.json`. A version is built in `<root>/<name>/.staging-<uuid>` and
    renamed into place in one step, so a reader (the service polling for a new production
    version) never sees a half-written one, and a crash leaves only a dot-directory that no
    listing shows. Every write to a model (publish, add_artifacts, set_alias) holds an
    exclusive `flock` on `<root>/<name>/.lock`, so that two publishers cannot pick the same
    auto-numbered version or lose each other's alias updates; `resolve` and `verify` hold it
    shared, so that they never hash files that `add_artifacts` is in the middle of replacing.
    The lock is advisory and per host; do not share a store between hosts without a
    filesystem whose `flock` spans them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.fullmatch(p.name)
        )

    def list_versions(self, name: str) -> list[Manifest]:
        """The manifests of all versions, by creation time (not verified against the files)."""
        model_dir = self._existing_model_dir(name)
        manifests = [self._read_manifest(name, v) for v in self._version_names(model_dir)]
        return sorted(manifests, key=lambda m: (m.created_at, _natural_key(m.version)))

    def aliases(self, name: str) -> dict[str, str]:
        return self._read_aliases(self._existing_model_dir(name))

    def read_manifest(self, name: str, ref: str = PRODUCTION) -> Manifest:
        """The manifest of `ref` without checking the files: for display, never for loading."""
        return self._read_manifest(name, self._version_of(name, ref))

    def resolve(self, name: str, ref: str = PRODUCTION) -> ModelVersion:
        """The version that `ref` (an alias or a version) names, after verifying every file."""
        self._existing_model_dir(name)
        with self._lock(name, shared=True):
            return self._verified(name, self._version_of(name, ref))

    def verify(self, name: str, version: str) -> None:
        """Raise `IntegrityError` unless every file of the version matches its manifest."""
        _check("version", version, _VERSION_RE)
        self.resolve(name, version)

    # -- writing ---------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        source_dir: Path,
        *,
        version: str | None = None,
        manifest_fields: Mapping[str, Any],
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Publish `source_dir` as a new version (default `YYYY-MM-DD.N`, UTC) and move `latest`.

        `manifest_fields` holds every manifest key except the store-owned ones (name, version,
        created, files, schema_version). Everything that can be checked up front (names, file
        types, manifest fields, the promotion rule for `aliases`) is, before any byte is copied.
        """
        model_dir = self._model_dir(name)
        if version is not None:
            _check("version", version, _VERSION_RE)
        wanted = [_check("alias", a, _ALIAS_RE) for a in aliases]
        self._refuse_owned_keys(manifest_fields)
        sources = self._scan_source(Path(source_dir))
        draft = Manifest.from_dict(
            {
                **manifest_fields,
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "version": version or "0",
                "created": _utc_now(),
                "files": {},
            }
        )
        if PRODUCTION in wanted:
            self._check_promotable(draft, f"{name}@{version or '<new>'}")
        if version is not None:
            self._refuse_existing(model_dir, name, version)
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        try:
            # Copy outside the lock: it can take minutes, and needs no coordination.
            files = {rel: _copy_hashed(src, staging / rel) for rel, src in sources}
            with self._lock(name):
                final = version or self._next_version(model_dir)
                self._refuse_existing(model_dir, name, final)
                manifest = dataclasses.replace(
                    draft, version=final, created=_utc_now(), files=files
                )
                _write_new(staging / MANIFEST_FILE, manifest.to_json())
                for directory, _, _ in os.walk(staging, topdown=False):
                    _fsync_dir(Path(directory))
                # The commit point: one rename makes the complete version visible.
                os.rename(staging, model_dir / final)
                _fsync_dir(model_dir)
                moved = {**self._read_aliases(model_dir), **dict.fromkeys(wanted, final)}
                self._write_aliases(model_dir, {**moved, LATEST: final})
        finally:
            # After the rename this is a no-op; before it, it removes the partial version.
            shutil.rmtree(staging, ignore_errors=True)
        return ModelVersion(name, final, model_dir / final, manifest)

    def add_artifacts(
        self,
        name: str,
        version: str,
        files: Mapping[str, Path],
        manifest_updates: Mapping[str, Any],
    ) -> ModelVersion:
        """Add files (relative path -> source) to a version and update its manifest.

        This is how the service caches ONNX exported on first load and records parity. Only
        `onnx/` files already listed may be replaced; everything else listed is immutable.
        Updates replace top-level keys, except `eval` and `extra`, which are merged. New files
        are written under temporary names first and moved into place just before the manifest
        is replaced; a crash between the two leaves files whose checksums the old manifest
        does not match, which `resolve` then refuses rather than serving.
        """
        _check("version", version, _VERSION_RE)
        self._existing_model_dir(name)
        self._refuse_owned_keys(manifest_updates)
        for relpath, source in files.items():
            _check_artifact(relpath)
            if not Path(source).is_file():
                raise ForbiddenFileError(f"source {source} for {relpath!r} is not a regular file")
        with self._lock(name):
            current = self._verified(name, self._version_of(name, version))
            for relpath in files:
                if relpath in current.manifest.files and not relpath.startswith(ONNX_DIR):
                    raise VersionExistsError(
                        f"refusing to overwrite {relpath!r} in {name}@{version}: "
                        f"only {ONNX_DIR} artifacts may be replaced"
                    )
            targets = {rel: _contained(current.path, rel) for rel in files}
            merged = current.manifest.updated(manifest_updates)
            staged: list[tuple[Path, Path]] = []
            try:
                hashes: dict[str, str] = {}
                for relpath, source in files.items():
                    target = targets[relpath]
                    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
                    staged.append((tmp, target))
                    hashes[relpath] = _copy_hashed(Path(source), tmp)
                manifest = dataclasses.replace(merged, files={**merged.files, **hashes})
                for tmp, target in staged:
                    os.replace(tmp, target)
                for directory in {target.parent for _, target in staged}:
                    _fsync_dir(directory)
                _write_atomic(current.path / MANIFEST_FILE, manifest.to_json())
            finally:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
        return ModelVersion(name, version, current.path, manifest)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (verified first). `production` needs a passing parity."""
        _check("alias", alias, _ALIAS_RE)
        _check("version", version, _VERSION_RE)
        model_dir = self._existing_model_dir(name)
        with self._lock(name):
            target = self._verified(name, self._version_of(name, version))
            if alias == PRODUCTION:
                self._check_promotable(target.manifest, f"{name}@{version}")
            self._write_aliases(model_dir, {**self._read_aliases(model_dir), alias: version})

    # -- internals -------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.root / _check("model name", name, _NAME_RE)

    def _existing_model_dir(self, name: str) -> Path:
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            known = ", ".join(self.list_models()) or "none"
            raise VersionNotFoundError(f"unknown model {name!r} in {self.root} (models: {known})")
        return model_dir

    @staticmethod
    def _version_names(model_dir: Path) -> list[str]:
        return sorted(
            (
                p.name
                for p in model_dir.iterdir()
                if _VERSION_RE.fullmatch(p.name) and (p / MANIFEST_FILE).is_file()
            ),
            key=_natural_key,
        )

    def _version_of(self, name: str, ref: str) -> str:
        model_dir = self._existing_model_dir(name)
        versions = self._version_names(model_dir)
        listed = ", ".join(versions) or "none"
        if isinstance(ref, str) and _VERSION_RE.fullmatch(ref):
            if ref not in versions:
                raise VersionNotFoundError(
                    f"model {name!r} has no version {ref!r} (versions: {listed})"
                )
            return ref
        _check("alias or version", ref, _ALIAS_RE)
        aliases = self._read_aliases(model_dir)
        if ref not in aliases:
            shown = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise VersionNotFoundError(
                f"model {name!r} has no alias {ref!r} (aliases: {shown}; versions: {listed})"
            )
        if aliases[ref] not in versions:
            raise VersionNotFoundError(
                f"alias {ref!r} of model {name!r} points to {aliases[ref]!r}, which does not "
                f"exist (versions: {listed})"
            )
        return aliases[ref]

    def _read_manifest(self, name: str, version: str) -> Manifest:
        path = self.root / name / version / MANIFEST_FILE
        manifest = Manifest.from_path(path)
        if (manifest.name, manifest.version) != (name, version):
            raise IntegrityError(
                f"{path} describes {manifest.name}@{manifest.version}, "
                f"but it is stored as {name}@{version}"
            )
        return manifest

    def _verified(self, name: str, version: str) -> ModelVersion:
        version_dir = self.root / name / version
        manifest = self._read_manifest(name, version)
        problems = []
        for relpath, expected in sorted(manifest.files.items()):
            try:
                path = _contained(version_dir, relpath)
            except InvalidNameError as exc:
                problems.append(str(exc))
                continue
            if not path.is_file():
                problems.append(f"{relpath}: missing")
            elif (actual := sha256_file(path)) != expected:
                problems.append(
                    f"{relpath}: altered (sha256 {actual[:12]}..., manifest {expected[:12]}...)"
                )
        if problems:
            raise IntegrityError(
                f"{name}@{version} failed its integrity check: {'; '.join(problems)}"
            )
        return ModelVersion(name, version, version_dir, manifest)

    @staticmethod
    def _scan_source(source_dir: Path) -> list[tuple[str, Path]]:
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
                    found.append((_check_artifact(relpath), path))
        if not found:
            raise StoreError(f"source {source_dir} holds no files")
        return sorted(found)

    @staticmethod
    def _refuse_owned_keys(fields: Mapping[str, Any]) -> None:
        owned = sorted(STORE_OWNED_KEYS & set(fields))
        if owned:
            raise ManifestError(f"manifest key(s) {owned} are set by the store, not the caller")

    @staticmethod
    def _refuse_existing(model_dir: Path, name: str, version: str) -> None:
        if (model_dir / version).exists():
            raise VersionExistsError(f"{name}@{version} already exists; versions are immutable")

    @staticmethod
    def _check_promotable(manifest: Manifest, label: str) -> None:
        if manifest.parity_passed:
            return
        state = "has not been run" if manifest.parity is None else "did not pass"
        raise PromotionError(f"refusing to promote {label} to {PRODUCTION}: parity {state}")

    @staticmethod
    def _next_version(model_dir: Path) -> str:
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        pattern = re.compile(re.escape(today) + r"\.(\d+)")
        used = [int(m[1]) for p in model_dir.iterdir() if (m := pattern.fullmatch(p.name))]
        return f"{today}.{max(used, default=0) + 1}"

    @staticmethod
    def _read_aliases(model_dir: Path) -> dict[str, str]:
        path = model_dir / ALIASES_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable aliases file: {exc}") from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise StoreError(f"{path}: expected an object of alias -> version strings")
        return data

    @staticmethod
    def _write_aliases(model_dir: Path, aliases: Mapping[str, str]) -> None:
        _write_atomic(model_dir / ALIASES_FILE, json.dumps(dict(sorted(aliases.items())), indent=2))

    @contextmanager
    def _lock(self, name: str, *, shared: bool = False) -> Iterator[None]:
        model_dir = self._model_dir(name)
        if not shared:
            model_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd: int | None = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
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


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
