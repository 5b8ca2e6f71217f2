from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.store_dir == Path("store")
    assert (s.model_name, s.model_ref, s.provider) == ("prism-movies", "production", "auto")
    assert (s.max_batch_size, s.max_wait_ms, s.max_queue) == (16, 2.0, 256)
    assert s.request_timeout_ms == 10_000
    assert (s.max_history, s.max_title_chars, s.max_attributes, s.max_slate_size) == (
        50,
        300,
        32,
        32,
    )
    assert s.max_body_bytes == 262_144
    assert (s.default_max_new_tokens, s.max_new_tokens_limit, s.max_num_beams) == (48, 96, 4)
    assert s.max_input_tokens is None and s.api_key is None and s.api_key_value is None
    assert s.auto_export and s.warmup and s.intra_op_threads == 0 and s.log_level == "info"
    assert s.intra_op_spinning == "run"


def test_reads_prism_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("PRISM_PROVIDER", "cpu")
    monkeypatch.setenv("PRISM_API_KEY", "s3cret")
    monkeypatch.setenv("PRISM_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("PRISM_MAX_INPUT_TOKENS", "256")
    monkeypatch.setenv("PRISM_INTRA_OP_SPINNING", "off")
    monkeypatch.setenv("MAX_QUEUE", "1")  # no prefix: ignored
    s = Settings()
    assert s.intra_op_spinning == "off"
    assert (s.max_batch_size, s.provider, s.log_level, s.max_input_tokens) == (
        8,
        "cpu",
        "debug",
        256,
    )
    assert s.max_queue == 256
    assert s.api_key_value == "s3cret"
    assert "s3cret" not in repr(s)


def test_every_field_has_a_description() -> None:
    # The README's configuration table is generated from these.
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert missing == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"provider": "tpu"},
        {"max_batch_size": 0},
        {"max_wait_ms": -1},
        {"default_max_new_tokens": 100, "max_new_tokens_limit": 96},
        {"log_level": "loud"},
        {"intra_op_spinning": "always"},
    ],
)
def test_rejects_bad_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]


def test_empty_api_key_means_auth_off() -> None:
    assert Settings(api_key="").api_key_value is None  # type: ignore[arg-type]


def test_the_second_pass_width_reaches_the_decode_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_SECOND_PASS_CANDIDATES", "1")
    assert Settings().decode().candidates == 1  # no second pass: the evidence sentence at once
    monkeypatch.setenv("PRISM_SECOND_PASS_CANDIDATES", "0")
    with pytest.raises(ValidationError):
        Settings()
