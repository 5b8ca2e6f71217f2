"""One stored version read back: its manifest (which must name the version it is stored as)
and `ModelVersion`, the version whose listed files all matched their checksums."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model_store.errors import ArtifactNotFoundError, IntegrityError
from model_store.files import checksum_problems
from model_store.manifest import MANIFEST_FILE, Manifest


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


def version_manifest(root: Path, name: str, version: str) -> Manifest:
    """The manifest of `<root>/<name>/<version>`, files unchecked; it must name that version."""
    path = root / name / version / MANIFEST_FILE
    manifest = Manifest.from_path(path)
    if (manifest.name, manifest.version) != (name, version):
        raise IntegrityError(
            f"{path} describes {manifest.name}@{manifest.version}, "
            f"but it is stored as {name}@{version}"
        )
    return manifest


def verified_version(root: Path, name: str, version: str) -> ModelVersion:
    """`ModelVersion` of `<root>/<name>/<version>`; `IntegrityError` if a listed file is off."""
    version_dir = root / name / version
    manifest = version_manifest(root, name, version)
    problems = checksum_problems(version_dir, manifest.files)
    if problems:
        raise IntegrityError(f"{name}@{version} failed its integrity check: {'; '.join(problems)}")
    return ModelVersion(name, version, version_dir, manifest)
