"""The model store's errors. Each names what is wrong and, where it helps, what exists."""

from __future__ import annotations

from model_store.manifest import ManifestError, StoreError

__all__ = [
    "ArtifactNotFoundError",
    "ForbiddenFileError",
    "IntegrityError",
    "InvalidNameError",
    "ManifestError",
    "PromotionError",
    "StoreError",
    "VersionExistsError",
    "VersionNotFoundError",
]


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
