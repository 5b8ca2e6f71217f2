"""One model's directory: its version directories, its aliases file and its lock file.

`<root>/<name>/<version>/` holds a version (manifest.json and the artifacts),
`<root>/<name>/aliases.json` the aliases and `<root>/<name>/.lock` the lock `ModelStore`
takes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from model_store.errors import StoreError, VersionNotFoundError
from model_store.files import write_atomic
from model_store.manifest import MANIFEST_FILE
from model_store.names import ALIAS_RE, VERSION_RE, check, natural_key

ALIASES_FILE = "aliases.json"
LOCK_FILE = ".lock"


def version_names(model_dir: Path) -> list[str]:
    """The versions in `model_dir` (directories with a manifest), in natural order."""
    return sorted(
        (
            p.name
            for p in model_dir.iterdir()
            if VERSION_RE.fullmatch(p.name) and (p / MANIFEST_FILE).is_file()
        ),
        key=natural_key,
    )


def next_version(model_dir: Path) -> str:
    """Today's next free `YYYY-MM-DD.N` (UTC)."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    pattern = re.compile(re.escape(today) + r"\.(\d+)")
    used = [int(m[1]) for p in model_dir.iterdir() if (m := pattern.fullmatch(p.name))]
    return f"{today}.{max(used, default=0) + 1}"


def version_of(model_dir: Path, name: str, ref: str) -> str:
    """The version that `ref` (a version or an alias) names in model `name`'s `model_dir`."""
    versions = version_names(model_dir)
    listed = ", ".join(versions) or "none"
    if isinstance(ref, str) and VERSION_RE.fullmatch(ref):
        if ref not in versions:
            raise VersionNotFoundError(
                f"model {name!r} has no version {ref!r} (versions: {listed})"
            )
        return ref
    check("alias or version", ref, ALIAS_RE)
    aliases = read_aliases(model_dir)
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


def read_aliases(model_dir: Path) -> dict[str, str]:
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


def write_aliases(model_dir: Path, aliases: Mapping[str, str]) -> None:
    write_atomic(model_dir / ALIASES_FILE, json.dumps(dict(sorted(aliases.items())), indent=2))
