"""The manifest: strict parsing, round trips, the merge rule and streaming checksums."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from model_store.manifest import Manifest, ManifestError, StoreError, relpath_error, sha256_file

DIGEST = "ab" * 32


def manifest_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "name": "prism-movies",
        "version": "2026-12-01.1",
        "created": "2026-12-01T10:00:00.000000Z",
        "base_model": "prism-tiny",
        "input_format": {"name": "prism-input", "version": 2, "config": {"max_history": 50}},
        "d_model": 64,
        "num_users": 10,
        "files": {"model/config.json": DIGEST, "users/vectors.npy": "cd" * 32},
        "eval": {"rouge_l": 0.41},
        "parity": {"passed": True, "cases": 8},
        "generation": {"decoder_start_token_id": 2, "eos_token_id": 2},
        "extra": {"note": "test"},
        "variants": {
            "int8": {
                "encoder": "onnx/encoder.int8.onnx",
                "decoder": "onnx/decoder.int8.onnx",
                "method": "MatMulNBits int8",
                "compared": 1960,
                "sequences_identical": 0.9827,
                "tokens_identical": 0.9826,
                "bars_passed": True,
                "failed_bars": [],
                "servable": True,
                "reason": "",
                "recipe": "blocks",
                "refused": ["dynamic-encoder: 97.65% of answers identical to fp32 (needs 98%)"],
            }
        },
    }
    data.update(overrides)
    return data


def test_json_round_trip_preserves_every_field() -> None:
    manifest = Manifest.from_dict(manifest_dict())
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    assert json.loads(manifest.to_json()) == manifest_dict()


def test_a_variant_record_is_checked_like_the_rest() -> None:
    variant = manifest_dict()["variants"]["int8"]
    with pytest.raises(ManifestError, match="sequences_identical"):
        Manifest.from_dict(manifest_dict(variants={"int8": variant | {"sequences_identical": 1.5}}))
    with pytest.raises(ManifestError, match="servable"):
        Manifest.from_dict(manifest_dict(variants={"int8": variant | {"servable": "yes"}}))
    older = manifest_dict()
    del older["variants"]  # versions published before variants existed still load
    assert Manifest.from_dict(older).variants == {}


def test_from_path_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest_dict()), encoding="utf-8")
    assert Manifest.from_path(path).version == "2026-12-01.1"


def test_from_path_names_the_file_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=re.escape("nope.json")):
        Manifest.from_path(tmp_path / "nope.json")


def test_optional_keys_default() -> None:
    data = manifest_dict()
    for key in ("eval", "parity", "generation", "extra"):
        del data[key]
    manifest = Manifest.from_dict(data)
    assert manifest.parity is None and not manifest.parity_passed
    assert manifest.eval == {} and manifest.extra == {} and manifest.generation == {}


@pytest.mark.parametrize(
    "key",
    [
        *("schema_version", "name", "version", "created", "base_model", "input_format"),
        *("d_model", "num_users", "files"),
    ],
)
def test_missing_required_key_is_named(key: str) -> None:
    data = manifest_dict()
    del data[key]
    with pytest.raises(ManifestError, match=key):
        Manifest.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("d_model", "64"),
        ("d_model", True),
        ("d_model", 0),
        ("num_users", -1),
        ("name", ""),
        ("base_model", 3),
        ("created", "yesterday"),
        ("created", "2026-12-01T10:00:00+02:00"),
        ("created", "2026-12-01T10:00:00"),
        ("input_format", {"name": "x", "version": 1}),
        ("input_format", {"name": "x", "version": True, "config": {}}),
        ("files", {"model/config.json": "not-a-digest"}),
        ("files", ["model/config.json"]),
        ("eval", [1, 2]),
        ("parity", {"cases": 3}),
        ("parity", {"passed": "yes"}),
        ("generation", None),
        ("extra", "x"),
        ("schema_version", 2),
    ],
)
def test_wrong_type_is_named(key: str, value: Any) -> None:
    with pytest.raises(ManifestError, match=f"'{key}"):
        Manifest.from_dict(manifest_dict(**{key: value}))


@pytest.mark.parametrize(
    "relpath",
    [
        *("../escape.json", "/etc/passwd.json", "a//b.json", "./a.json", ".hidden.json"),
        *("model/../../x.json", "a\\b.json", "manifest.json", ""),
    ],
)
def test_unsafe_file_paths_are_rejected(relpath: str) -> None:
    with pytest.raises(ManifestError, match="files"):
        Manifest.from_dict(manifest_dict(files={relpath: DIGEST}))


def test_relpath_error_accepts_plain_nested_paths() -> None:
    assert relpath_error("onnx/encoder.onnx") is None
    assert relpath_error("../x") is not None


def test_unknown_top_level_key_is_rejected() -> None:
    with pytest.raises(ManifestError, match="prompt_template"):
        Manifest.from_dict(manifest_dict(prompt_template="..."))


def test_invalid_json_duplicates_and_nan_are_rejected() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{")
    with pytest.raises(ManifestError, match="duplicate key 'name'"):
        Manifest.from_json('{"name": "a", "name": "b"}')
    with pytest.raises(ManifestError, match="NaN"):
        Manifest.from_json(json.dumps(manifest_dict(eval={"bleu": float("nan")})))
    with pytest.raises(ManifestError, match="object"):
        Manifest.from_json("[]")


def test_unserialisable_values_fail_at_construction() -> None:
    with pytest.raises(ManifestError, match="JSON"):
        Manifest.from_dict(manifest_dict(extra={"when": object()}))
    with pytest.raises(ManifestError, match="'eval"):
        Manifest.from_dict(manifest_dict(eval={1: 0.5}))


def test_manifest_error_is_a_store_error() -> None:
    assert issubclass(ManifestError, StoreError)


def test_manifest_does_not_share_state_with_its_input() -> None:
    data = manifest_dict()
    manifest = Manifest.from_dict(data)
    data["eval"]["rouge_l"] = 0.0
    assert manifest.eval["rouge_l"] == 0.41


def test_updated_merges_eval_and_extra_and_replaces_the_rest() -> None:
    manifest = Manifest.from_dict(manifest_dict(parity=None))
    new = manifest.updated(
        {"eval": {"bleu": 0.2}, "extra": {"onnx": "v1"}, "parity": {"passed": False}}
    )
    assert new.eval == {"rouge_l": 0.41, "bleu": 0.2}
    assert new.extra == {"note": "test", "onnx": "v1"}
    assert new.parity is not None and new.parity.model_dump() == {"passed": False}
    assert not new.parity_passed
    assert manifest.parity is None  # the original is untouched
    with pytest.raises(ManifestError, match="bogus"):
        manifest.updated({"bogus": 1})
    with pytest.raises(ManifestError, match="'d_model'"):
        manifest.updated({"d_model": "wide"})


def test_replace_revalidates_and_the_manifest_is_immutable() -> None:
    manifest = Manifest.from_dict(manifest_dict())
    with pytest.raises(ManifestError, match="'num_users'"):
        manifest.replaced(num_users=-5)
    assert manifest.replaced(num_users=5).num_users == 5
    with pytest.raises(ValidationError):
        manifest.num_users = 5  # type: ignore[misc]


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "blob.npy"
    data = bytes(range(256)) * (5 * 4096 + 7)  # about 5 MiB, not a multiple of the chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
