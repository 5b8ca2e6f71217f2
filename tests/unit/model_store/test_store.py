"""The model store on real files: publish, resolve, integrity, aliases, artifacts, safety."""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from model_store.manifest import Manifest, ManifestError, sha256_file
from model_store.store import (
    ArtifactNotFoundError,
    ForbiddenFileError,
    IntegrityError,
    InvalidNameError,
    ModelStore,
    PromotionError,
    StoreError,
    VersionExistsError,
    VersionNotFoundError,
)

NAME = "prism-movies"


def fields(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "base_model": "prism-tiny",
        "input_format": {"name": "prism-input", "version": 1, "config": {}},
        "d_model": 16,
        "num_users": 3,
        "generation": {"decoder_start_token_id": 2, "eos_token_id": 2},
    }
    data.update(overrides)
    return data


def make_source(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    files = {
        "model/config.json": b'{"d_model": 16}',
        "model/model.safetensors": b"\x00" * 4096,
        "tokenizer/tokenizer.json": b"{}",
        "users/ids.json": b'{"u1": 1}',
        "users/vectors.npy": os.urandom(512),
        "eval/report.md": b"# report\n",
        **(extra or {}),
    }
    for relpath, data in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_source(tmp_path / "src")


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def leftovers(store: ModelStore) -> list[str]:
    model_dir = store.root / NAME
    if not model_dir.exists():
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.name != ".lock")


# -- publish and resolve ---------------------------------------------------------------------


def test_publish_then_resolve_round_trip(store: ModelStore, source: Path) -> None:
    published = store.publish(NAME, source, manifest_fields=fields(eval={"rouge_l": 0.3}))
    resolved = store.resolve(NAME, "latest")
    assert resolved == published
    assert resolved.path == store.root / NAME / published.version
    manifest = Manifest.from_path(resolved.path / "manifest.json")
    assert manifest == resolved.manifest
    assert (manifest.name, manifest.version, manifest.d_model) == (NAME, published.version, 16)
    assert manifest.eval == {"rouge_l": 0.3}
    assert manifest.parity is None
    assert set(manifest.files) == {
        "model/config.json",
        "model/model.safetensors",
        "tokenizer/tokenizer.json",
        "users/ids.json",
        "users/vectors.npy",
        "eval/report.md",
    }
    for relpath, digest in manifest.files.items():
        assert digest == sha256_file(source / relpath)
        assert resolved.file(relpath).read_bytes() == (source / relpath).read_bytes()
    assert store.resolve(NAME, published.version) == published
    assert manifest.created_at.tzinfo is not None


def test_file_refuses_unlisted_paths(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    (version.path / "onnx").mkdir()
    (version.path / "onnx" / "encoder.onnx").write_bytes(b"unverified")
    assert not version.has_file("onnx/encoder.onnx")
    with pytest.raises(ArtifactNotFoundError, match=re.escape("onnx/encoder.onnx")):
        version.file("onnx/encoder.onnx")


def test_versions_are_numbered_per_utc_day(store: ModelStore, source: Path) -> None:
    first = store.publish(NAME, source, manifest_fields=fields())
    second = store.publish(NAME, source, manifest_fields=fields())
    assert (first.version, second.version) == (f"{today()}.1", f"{today()}.2")
    (store.root / NAME / f"{today()}.9").mkdir()  # a gap: the next number follows the maximum
    assert store.publish(NAME, source, manifest_fields=fields()).version == f"{today()}.10"


def test_explicit_version_and_no_overwrite(store: ModelStore, source: Path) -> None:
    store.publish(NAME, source, version="1.0", manifest_fields=fields(num_users=3))
    with pytest.raises(VersionExistsError, match=re.escape("1.0")):
        store.publish(NAME, source, version="1.0", manifest_fields=fields(num_users=99))
    assert store.resolve(NAME, "1.0").manifest.num_users == 3
    assert leftovers(store) == ["1.0", "aliases.json"]


def test_latest_moves_and_other_aliases_stay(store: ModelStore, source: Path) -> None:
    first = store.publish(NAME, source, manifest_fields=fields(), aliases=["staging"])
    assert store.aliases(NAME) == {"latest": first.version, "staging": first.version}
    second = store.publish(NAME, source, manifest_fields=fields())
    assert store.aliases(NAME) == {"latest": second.version, "staging": first.version}
    assert store.resolve(NAME, "latest").version == second.version
    assert store.resolve(NAME, "staging").version == first.version


def test_listing(store: ModelStore, source: Path, tmp_path: Path) -> None:
    assert store.list_models() == []
    versions = [store.publish(NAME, source, manifest_fields=fields()).version for _ in range(3)]
    store.publish("other", source, version="7", manifest_fields=fields())
    (store.root / NAME / ".staging-crashed").mkdir()  # never listed
    assert store.list_models() == ["other", NAME]
    assert [m.version for m in store.list_versions(NAME)] == versions
    assert store.aliases("other") == {"latest": "7"}


def test_unknown_model_version_and_alias_say_what_exists(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, version="1.0", manifest_fields=fields()).version
    with pytest.raises(VersionNotFoundError, match=f"unknown model 'nope'.*{NAME}"):
        store.resolve("nope")
    with pytest.raises(VersionNotFoundError, match=r"no version '2.0' \(versions: 1.0\)"):
        store.resolve(NAME, "2.0")
    with pytest.raises(VersionNotFoundError, match=f"no alias 'production'.*latest -> {version}"):
        store.resolve(NAME)  # the default ref is production
    with pytest.raises(VersionNotFoundError):
        store.list_versions("nope")


# -- integrity -------------------------------------------------------------------------------


def test_tampered_file_is_named(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    with version.file("users/vectors.npy").open("r+b") as stream:
        first = stream.read(1)[0]
        stream.seek(0)
        stream.write(bytes([first ^ 0xFF]))  # always a different byte (the content is random)
    with pytest.raises(IntegrityError, match=r"users/vectors\.npy: altered"):
        store.resolve(NAME, "latest")
    with pytest.raises(IntegrityError, match=r"users/vectors\.npy"):
        store.verify(NAME, version.version)


def test_missing_file_is_named(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    version.file("tokenizer/tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match=r"tokenizer/tokenizer\.json: missing"):
        store.verify(NAME, version.version)


def test_manifest_must_match_its_directory(store: ModelStore, source: Path) -> None:
    store.publish(NAME, source, version="1.0", manifest_fields=fields())
    os.rename(store.root / NAME / "1.0", store.root / NAME / "2.0")
    with pytest.raises(IntegrityError, match=re.escape("stored as prism-movies@2.0")):
        store.resolve(NAME, "2.0")


def test_symlink_out_of_the_version_dir_is_refused(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "ids.json").write_bytes((source / "users/ids.json").read_bytes())
    users = version.path / "users"
    (users / "vectors.npy").rename(outside / "vectors.npy")
    (users / "ids.json").unlink()
    users.rmdir()
    users.symlink_to(outside)  # same bytes, but outside the version: still refused
    with pytest.raises(IntegrityError, match="escapes"):
        store.verify(NAME, version.version)


# -- refused files and names -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".PKL", ""])
def test_pickle_like_files_are_refused_and_nothing_is_left(
    store: ModelStore, tmp_path: Path, suffix: str
) -> None:
    source = make_source(tmp_path / "src", {f"model/pytorch_model{suffix}": b"\x80\x04"})
    with pytest.raises(ForbiddenFileError, match=f"model/pytorch_model{suffix}"):
        store.publish(NAME, source, manifest_fields=fields())
    assert leftovers(store) == []


def test_symlinks_in_the_source_are_refused(store: ModelStore, source: Path) -> None:
    (source / "users" / "link.json").symlink_to(source / "users" / "ids.json")
    with pytest.raises(ForbiddenFileError, match=re.escape("users/link.json")):
        store.publish(NAME, source, manifest_fields=fields())
    assert leftovers(store) == []


def test_source_must_not_bring_its_own_manifest(store: ModelStore, source: Path) -> None:
    (source / "manifest.json").write_text("{}")
    with pytest.raises(InvalidNameError, match=re.escape("manifest.json")):
        store.publish(NAME, source, manifest_fields=fields())


def test_bad_manifest_fields_are_refused_before_copying(store: ModelStore, source: Path) -> None:
    with pytest.raises(ManifestError, match="d_model"):
        store.publish(NAME, source, manifest_fields=fields(d_model="big"))
    with pytest.raises(ManifestError, match="files"):
        store.publish(NAME, source, manifest_fields=fields(files={}))
    assert leftovers(store) == []


@pytest.mark.parametrize(
    "name", ["../evil", "a/b", "/abs", "..", "", "Upper", "-x", "model\n", "a" * 65]
)
def test_bad_model_names_are_refused(store: ModelStore, source: Path, name: str) -> None:
    with pytest.raises(InvalidNameError):
        store.publish(name, source, manifest_fields=fields())
    with pytest.raises(InvalidNameError):
        store.resolve(name, "latest")
    assert not store.root.exists() or list(store.root.iterdir()) == []


@pytest.mark.parametrize("version", ["../1", "1/2", "/1", "latest", "1\n", ".1", "1 2"])
def test_bad_versions_are_refused(store: ModelStore, source: Path, version: str) -> None:
    with pytest.raises(InvalidNameError):
        store.publish(NAME, source, version=version, manifest_fields=fields())
    assert leftovers(store) == []


@pytest.mark.parametrize("alias", ["../production", "Prod", "1abc", "a/b", "x\n", "a_b"])
def test_bad_aliases_are_refused(store: ModelStore, source: Path, alias: str) -> None:
    with pytest.raises(InvalidNameError):
        store.publish(NAME, source, manifest_fields=fields(), aliases=[alias])
    assert leftovers(store) == []
    version = store.publish(NAME, source, manifest_fields=fields()).version
    with pytest.raises(InvalidNameError):
        store.set_alias(NAME, alias, version)
    # A ref starting with a digit is read as a version, so "1abc" is merely not found.
    with pytest.raises(VersionNotFoundError if alias[0].isdigit() else InvalidNameError):
        store.resolve(NAME, alias)


@pytest.mark.parametrize(
    "relpath", ["../escape.onnx", "/abs.onnx", "onnx/../../x.onnx", "onnx//a.onnx", "onnx/.a.onnx"]
)
def test_artifact_paths_that_escape_are_refused(
    store: ModelStore, source: Path, tmp_path: Path, relpath: str
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    artifact = tmp_path / "encoder.onnx"
    artifact.write_bytes(b"onnx")
    with pytest.raises(InvalidNameError):
        store.add_artifacts(NAME, version.version, {relpath: artifact}, {})
    assert not (store.root / "escape.onnx").exists() and not (store.root / "x.onnx").exists()


def test_artifact_dir_symlinked_outside_is_refused(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    outside = tmp_path / "outside"
    outside.mkdir()
    (version.path / "onnx").symlink_to(outside)
    artifact = tmp_path / "encoder.onnx"
    artifact.write_bytes(b"onnx")
    with pytest.raises(InvalidNameError, match="escapes"):
        store.add_artifacts(NAME, version.version, {"onnx/encoder.onnx": artifact}, {})
    assert list(outside.iterdir()) == []


# -- partial publishes -----------------------------------------------------------------------


def test_a_publish_that_fails_after_copying_leaves_nothing(store: ModelStore, source: Path) -> None:
    """Hold the model lock so that publish copies into staging and then waits; meanwhile a
    rival publishes the same version. The publish must fail and remove its staging dir."""
    model_dir = store.root / NAME
    model_dir.mkdir(parents=True)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            store.publish(NAME, source, version="1.0", manifest_fields=fields())
        except BaseException as exc:
            errors.append(exc)

    with (model_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        thread = threading.Thread(target=publish)
        thread.start()
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(".staging-") for p in model_dir.iterdir()):
            assert time.monotonic() < deadline, "publish never started staging"
            time.sleep(0.01)
        time.sleep(0.2)
        assert thread.is_alive(), "publish did not wait for the lock"
        rival = make_source(model_dir / "1.0")
        (rival / "manifest.json").write_text("{}")
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], VersionExistsError)
    assert leftovers(store) == ["1.0"]


# -- promotion -------------------------------------------------------------------------------


def test_promotion_needs_a_passing_parity(store: ModelStore, source: Path, tmp_path: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields()).version
    with pytest.raises(PromotionError, match="has not been run"):
        store.set_alias(NAME, "production", version)
    store.add_artifacts(NAME, version, {}, {"parity": {"passed": False}})
    with pytest.raises(PromotionError, match="did not pass"):
        store.set_alias(NAME, "production", version)
    assert "production" not in store.aliases(NAME)
    store.set_alias(NAME, "canary", version)  # other aliases need no parity
    store.add_artifacts(NAME, version, {}, {"parity": {"passed": True, "cases": 4}})
    store.set_alias(NAME, "production", version)
    assert store.resolve(NAME).version == version
    assert store.aliases(NAME)["production"] == version


def test_publish_with_production_alias_follows_the_rule(store: ModelStore, source: Path) -> None:
    with pytest.raises(PromotionError):
        store.publish(NAME, source, manifest_fields=fields(), aliases=["production"])
    assert leftovers(store) == []
    version = store.publish(
        NAME, source, manifest_fields=fields(parity={"passed": True}), aliases=["production"]
    )
    assert store.resolve(NAME, "production") == version


def test_promotion_verifies_integrity(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields(parity={"passed": True}))
    version.file("model/config.json").write_text("{}")
    with pytest.raises(IntegrityError, match=re.escape("model/config.json")):
        store.set_alias(NAME, "production", version.version)


# -- add_artifacts ---------------------------------------------------------------------------


def test_add_artifacts_records_checksums_and_still_verifies(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields(eval={"rouge_l": 0.3}))
    exported = tmp_path / "export"
    exported.mkdir()
    (exported / "encoder.onnx").write_bytes(b"encoder-v1")
    (exported / "decoder.onnx").write_bytes(b"decoder-v1")
    updated = store.add_artifacts(
        NAME,
        version.version,
        {
            "onnx/encoder.onnx": exported / "encoder.onnx",
            "onnx/decoder.onnx": exported / "decoder.onnx",
        },
        {"parity": {"passed": True}, "eval": {"bleu": 0.1}, "extra": {"opset": 17}},
    )
    manifest = updated.manifest
    assert manifest.files["onnx/encoder.onnx"] == sha256_file(exported / "encoder.onnx")
    assert manifest.files["model/config.json"] == version.manifest.files["model/config.json"]
    assert manifest.eval == {"rouge_l": 0.3, "bleu": 0.1}
    assert manifest.extra == {"opset": 17} and manifest.parity_passed
    assert Manifest.from_path(version.path / "manifest.json") == manifest
    assert store.resolve(NAME, "latest") == updated
    assert updated.file("onnx/decoder.onnx").read_bytes() == b"decoder-v1"
    # No temporary files are left next to the artifacts or the manifest.
    assert not [p for p in version.path.rglob(".*")]

    # ONNX artifacts may be re-exported; the new checksum replaces the old one.
    (exported / "encoder.onnx").write_bytes(b"encoder-v2")
    again = store.add_artifacts(
        NAME, version.version, {"onnx/encoder.onnx": exported / "encoder.onnx"}, {}
    )
    assert again.manifest.files["onnx/encoder.onnx"] == sha256_file(exported / "encoder.onnx")
    store.verify(NAME, version.version)


def test_add_artifacts_refuses_to_overwrite_published_files(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    replacement = tmp_path / "config.json"
    replacement.write_text('{"d_model": 999}')
    with pytest.raises(VersionExistsError, match=re.escape("model/config.json")):
        store.add_artifacts(NAME, version.version, {"model/config.json": replacement}, {})
    assert version.file("model/config.json").read_bytes() == b'{"d_model": 16}'
    store.verify(NAME, version.version)


def test_add_artifacts_applies_the_allowlist_and_owned_keys(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields()).version
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x80\x04")
    with pytest.raises(ForbiddenFileError, match=re.escape("onnx/model.pt")):
        store.add_artifacts(NAME, version, {"onnx/model.pt": weights}, {})
    with pytest.raises(ManifestError, match="files"):
        store.add_artifacts(NAME, version, {}, {"files": {}})
    with pytest.raises(ManifestError, match="bogus"):
        store.add_artifacts(NAME, version, {}, {"bogus": 1})
    with pytest.raises(StoreError, match="not a regular file"):
        store.add_artifacts(NAME, version, {"onnx/a.onnx": tmp_path / "missing.onnx"}, {})
    assert not (store.root / NAME / version / "onnx").exists()


def test_add_artifacts_refuses_a_damaged_version(
    store: ModelStore, source: Path, tmp_path: Path
) -> None:
    version = store.publish(NAME, source, manifest_fields=fields())
    version.file("users/ids.json").write_text("{}")
    artifact = tmp_path / "encoder.onnx"
    artifact.write_bytes(b"onnx")
    with pytest.raises(IntegrityError, match=re.escape("users/ids.json")):
        store.add_artifacts(NAME, version.version, {"onnx/encoder.onnx": artifact}, {})
    assert not (version.path / "onnx").exists()


def test_aliases_file_is_plain_json(store: ModelStore, source: Path) -> None:
    version = store.publish(NAME, source, manifest_fields=fields()).version
    data = json.loads((store.root / NAME / "aliases.json").read_text())
    assert data == {"latest": version}
