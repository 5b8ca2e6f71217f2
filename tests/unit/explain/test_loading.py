"""Which precision variant a load serves."""

import pytest

from explain.errors import ModelLoadError
from explain.loading import choose_variant


@pytest.mark.parametrize(
    ("device", "servable", "expected"),
    [
        ("cpu", {"int8", "fp16"}, "int8"),
        ("cuda", {"int8", "fp16"}, "fp16"),
        ("cpu", {"fp16"}, "fp32"),  # int8 missed its gate: fp32, not the CUDA variant
        ("cuda", {"int8"}, "fp32"),
        ("cpu", set(), "fp32"),
    ],
)
def test_auto_serves_the_device_variant_only_when_it_passed(device, servable, expected) -> None:
    assert choose_variant("auto", device, servable) == expected


def test_fp32_needs_no_gate() -> None:
    assert choose_variant("fp32", "cpu", set()) == "fp32"


def test_a_named_variant_that_did_not_pass_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="int8 variant did not pass its gate"):
        choose_variant("int8", "cpu", {"fp16"})
    assert choose_variant("fp16", "cpu", {"fp16"}) == "fp16"  # asked for by name: served


def test_an_unknown_variant_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="unknown precision variant 'int4'"):
        choose_variant("int4", "cpu", {"int4"})


def test_only_an_int8_encoder_that_says_per_row_is_batched():
    from types import SimpleNamespace

    from explain import artifacts
    from explain.loading import scales_per_call

    def encoder(**metadata):
        return SimpleNamespace(metadata=metadata)

    per_row = encoder(**{artifacts.ACTIVATION_SCALES: artifacts.PER_ROW})
    per_call = encoder(**{artifacts.ACTIVATION_SCALES: artifacts.PER_CALL})
    assert not scales_per_call(per_row, artifacts.INT8)
    assert scales_per_call(per_call, artifacts.INT8)
    assert scales_per_call(encoder(), artifacts.INT8)  # published before graphs said
    assert not scales_per_call(encoder(), artifacts.FP32)
    assert not scales_per_call(encoder(), artifacts.FP16)
