"""`prism-store` end to end through `main([...])` on a real store in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_store.cli import main
from model_store.store import ModelStore

NAME = "prism-movies"


def write_source(root: Path) -> Path:
    for relpath, text in {
        "model/config.json": '{"d_model": 16}',
        "tokenizer/tokenizer.json": "{}",
        "users/ids.json": '{"u1": 1}',
    }.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def write_fields(path: Path, **overrides: Any) -> Path:
    fields: dict[str, Any] = {
        "base_model": "prism-tiny",
        "input_format": {"name": "prism-input", "version": 1, "config": {}},
        "d_model": 16,
        "num_users": 1,
        **overrides,
    }
    path.write_text(json.dumps(fields))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def publish(root: Path, tmp_path: Path, *extra: str, **fields: Any) -> str:
    source = write_source(tmp_path / "src")
    manifest_fields = write_fields(tmp_path / "fields.json", **fields)
    code = main(
        [
            *("--root", str(root), "publish", str(source), "--name", NAME),
            *("--manifest-fields", str(manifest_fields), *extra),
        ]
    )
    assert code == 0
    return ModelStore(root).aliases(NAME)["latest"]


def test_publish_list_show_verify(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish(root, tmp_path, "--version", "1.0", "--alias", "canary")
    assert version == "1.0"
    assert f"published {NAME}@1.0" in capsys.readouterr().out

    assert main(["--root", str(root), "list"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}  (aliases: canary -> 1.0, latest -> 1.0)" in out
    assert "1.0" in out and "parity not run" in out and "[canary, latest]" in out

    assert main(["--root", str(root), "show", f"{NAME}@latest"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["version"], shown["d_model"]) == (NAME, "1.0", 16)
    assert set(shown["files"]) == {
        "model/config.json",
        "tokenizer/tokenizer.json",
        "users/ids.json",
    }

    assert main(["--root", str(root), "verify", f"{NAME}@1.0"]) == 0
    assert "ok: prism-movies@1.0 (3 files match)" in capsys.readouterr().out


def test_verify_reports_a_tampered_file_without_traceback(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish(root, tmp_path)
    capsys.readouterr()
    (root / NAME / version / "users" / "ids.json").write_text('{"u1": 2}')
    assert main(["--root", str(root), "verify", f"{NAME}@latest"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "users/ids.json: altered" in lines[0]
    assert "Traceback" not in captured.err
    # show still prints the manifest of a damaged version, so one can see what it expected.
    assert main(["--root", str(root), "show", f"{NAME}@{version}"]) == 0


def test_promote_needs_parity(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish(root, tmp_path)
    capsys.readouterr()
    assert main(["--root", str(root), "promote", NAME, version]) == 1
    assert "parity has not been run" in capsys.readouterr().err
    assert "production" not in ModelStore(root).aliases(NAME)

    ModelStore(root).add_artifacts(NAME, version, {}, {"parity": {"passed": True}})
    assert main(["--root", str(root), "promote", NAME, version]) == 0
    assert f"{NAME}: production -> {version}" in capsys.readouterr().out
    assert ModelStore(root).resolve(NAME).version == version
    newer = publish(root, tmp_path)  # latest moves on, production stays
    assert newer != version
    capsys.readouterr()
    assert main(["--root", str(root), "show", NAME]) == 0  # NAME alone means production
    assert json.loads(capsys.readouterr().out)["version"] == version
    assert main(["--root", str(root), "verify", NAME]) == 0
    assert main(["--root", str(root), "list"]) == 0
    assert "parity passed" in capsys.readouterr().out

    assert main(["--root", str(root), "promote", NAME, version, "--alias", "canary"]) == 0
    assert ModelStore(root).aliases(NAME)["canary"] == version


def test_publish_errors_are_one_line(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_source(tmp_path / "src")
    (source / "model" / "weights.pkl").write_bytes(b"\x80\x04")
    fields = write_fields(tmp_path / "fields.json")
    code = main(
        [
            *("--root", str(root), "publish", str(source), "--name", NAME),
            *("--manifest-fields", str(fields)),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model/weights.pkl" in err
    assert ModelStore(root).list_models() == []

    (source / "model" / "weights.pkl").unlink()
    assert main(["--root", str(root), "publish", str(source), "--name", NAME]) == 1
    assert "missing required key 'base_model'" in capsys.readouterr().err
    missing = str(tmp_path / "nope.json")
    args = ["--root", str(root), "publish", str(source), "--name", NAME]
    assert main([*args, "--manifest-fields", missing]) == 1
    assert "nope.json" in capsys.readouterr().err


def test_unknown_model_and_usage_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "list"]) == 0
    assert "no models" in capsys.readouterr().out
    assert main(["--root", str(root), "show", "nope@latest"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["--root", str(root), "show", "../etc"]) == 1
    assert "invalid model name" in capsys.readouterr().err
    assert main(["--root", str(root), "frobnicate"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0


def test_root_defaults_to_the_environment(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish(root, tmp_path)
    capsys.readouterr()
    monkeypatch.setenv("PRISM_STORE_DIR", str(root))
    assert main(["list"]) == 0
    assert version in capsys.readouterr().out
    monkeypatch.delenv("PRISM_STORE_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").rename(tmp_path / "elsewhere")  # ./store is now empty
    assert main(["list"]) == 0
    assert "no models in store" in capsys.readouterr().out
