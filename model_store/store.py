"""Versioned, checksummed model storage with aliases. See `ModelStore`."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_store.errors import (
    ArtifactNotFoundError,
    ForbiddenFileError,
    IntegrityError,
    InvalidNameError,
    ManifestError,
    PromotionError,
    StoreError,
    VersionExistsError,
    VersionNotFoundError,
)
from model_store.files import (
    copy_hashed,
    fsync_dir,
    locked,
    scan_source,
    write_atomic,
    write_new,
)
from model_store.layout import (
    LOCK_FILE,
    next_version,
    read_aliases,
    version_names,
    version_of,
    write_aliases,
)
from model_store.manifest import MANIFEST_FILE, SCHEMA_VERSION, Manifest
from model_store.names import (
    ALIAS_RE,
    ALLOWED_SUFFIXES,
    NAME_RE,
    VERSION_RE,
    check,
    check_artifact,
    contained,
    natural_key,
)
from model_store.version import ModelVersion, verified_version, version_manifest

__all__ = [
    "ALLOWED_SUFFIXES",
    "LATEST",
    "ONNX_DIR",
    "PRODUCTION",
    "ArtifactNotFoundError",
    "ForbiddenFileError",
    "IntegrityError",
    "InvalidNameError",
    "ManifestError",
    "ModelStore",
    "PromotionError",
    "StoreError",
    "VersionExistsError",
    "VersionNotFoundError",
]

LATEST = "latest"
PRODUCTION = "production"
# Where re-exported artifacts live: the only files that `add_artifacts` may replace.
ONNX_DIR = "onnx/"
# The store computes these itself; a caller supplying them would make the manifest lie.
STORE_OWNED_KEYS = frozenset({"schema_version", "name", "version", "created", "files"})


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
            p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name)
        )

    def list_versions(self, name: str) -> list[Manifest]:
        """The manifests of all versions, by creation time (not verified against the files)."""
        model_dir = self._existing_model_dir(name)
        manifests = [version_manifest(self.root, name, v) for v in version_names(model_dir)]
        return sorted(manifests, key=lambda m: (m.created_at, natural_key(m.version)))

    def aliases(self, name: str) -> dict[str, str]:
        return read_aliases(self._existing_model_dir(name))

    def read_manifest(self, name: str, ref: str = PRODUCTION) -> Manifest:
        """The manifest of `ref` without checking the files: for display, never for loading."""
        return version_manifest(self.root, name, self._version_of(name, ref))

    def resolve(self, name: str, ref: str = PRODUCTION) -> ModelVersion:
        """The version that `ref` (an alias or a version) names, after verifying every file."""
        self._existing_model_dir(name)
        with self._lock(name, shared=True):
            return verified_version(self.root, name, self._version_of(name, ref))

    def version_of(self, name: str, ref: str) -> str:
        """The version `ref` (an alias or a version) names now; nothing is verified."""
        self._existing_model_dir(name)
        with self._lock(name, shared=True):
            return self._version_of(name, ref)

    def verify(self, name: str, version: str) -> None:
        """Raise `IntegrityError` unless every file of the version matches its manifest."""
        check("version", version, VERSION_RE)
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
            check("version", version, VERSION_RE)
        wanted = [check("alias", a, ALIAS_RE) for a in aliases]
        self._refuse_owned_keys(manifest_fields)
        sources = scan_source(Path(source_dir))
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
            files = {rel: copy_hashed(src, staging / rel) for rel, src in sources}
            with self._lock(name):
                final = version or next_version(model_dir)
                self._refuse_existing(model_dir, name, final)
                manifest = draft.replaced(version=final, created=_utc_now(), files=files)
                write_new(staging / MANIFEST_FILE, manifest.to_json())
                for directory, _, _ in os.walk(staging, topdown=False):
                    fsync_dir(Path(directory))
                # The commit point: one rename makes the complete version visible.
                os.rename(staging, model_dir / final)
                fsync_dir(model_dir)
                moved = {**read_aliases(model_dir), **dict.fromkeys(wanted, final)}
                write_aliases(model_dir, {**moved, LATEST: final})
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
        check("version", version, VERSION_RE)
        self._existing_model_dir(name)
        self._refuse_owned_keys(manifest_updates)
        for relpath, source in files.items():
            check_artifact(relpath)
            if not Path(source).is_file():
                raise ForbiddenFileError(f"source {source} for {relpath!r} is not a regular file")
        with self._lock(name):
            current = verified_version(self.root, name, self._version_of(name, version))
            for relpath in files:
                if relpath in current.manifest.files and not relpath.startswith(ONNX_DIR):
                    raise VersionExistsError(
                        f"refusing to overwrite {relpath!r} in {name}@{version}: "
                        f"only {ONNX_DIR} artifacts may be replaced"
                    )
            targets = {rel: contained(current.path, rel) for rel in files}
            merged = current.manifest.updated(manifest_updates)
            staged: list[tuple[Path, Path]] = []
            try:
                hashes: dict[str, str] = {}
                for relpath, source in files.items():
                    target = targets[relpath]
                    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
                    staged.append((tmp, target))
                    hashes[relpath] = copy_hashed(Path(source), tmp)
                manifest = merged.replaced(files={**merged.files, **hashes})
                for tmp, target in staged:
                    os.replace(tmp, target)
                for directory in {target.parent for _, target in staged}:
                    fsync_dir(directory)
                write_atomic(current.path / MANIFEST_FILE, manifest.to_json())
            finally:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
        return ModelVersion(name, version, current.path, manifest)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (verified first). `production` needs a passing parity."""
        check("alias", alias, ALIAS_RE)
        check("version", version, VERSION_RE)
        model_dir = self._existing_model_dir(name)
        with self._lock(name):
            target = verified_version(self.root, name, self._version_of(name, version))
            if alias == PRODUCTION:
                self._check_promotable(target.manifest, f"{name}@{version}")
            write_aliases(model_dir, {**read_aliases(model_dir), alias: version})

    # -- internals -------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.root / check("model name", name, NAME_RE)

    def _existing_model_dir(self, name: str) -> Path:
        model_dir = self._model_dir(name)
        if not model_dir.is_dir():
            known = ", ".join(self.list_models()) or "none"
            raise VersionNotFoundError(f"unknown model {name!r} in {self.root} (models: {known})")
        return model_dir

    def _version_of(self, name: str, ref: str) -> str:
        return version_of(self._existing_model_dir(name), name, ref)

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

    def _lock(self, name: str, *, shared: bool = False) -> AbstractContextManager[None]:
        return locked(self._model_dir(name) / LOCK_FILE, shared=shared)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
