"""The peer benchmark's ratios: each engine at its better layout in each round."""

import pytest

from benchmarks.peers import best_ratio


def _round(seconds_for_32: float) -> dict:
    return {"batches": {"32": {"rows": 32, "latencies_s": [seconds_for_32] * 3}}}


def test_the_best_layout_of_each_engine_is_compared_round_by_round():
    results = {
        "prism-int8": [_round(2.0), _round(2.0)],
        "prism-int8-lanes": [_round(1.0), _round(4.0)],  # lanes win round 1 only
        "ct2-int8": [_round(1.5), _round(3.0)],
        "ct2-int8-lanes": [_round(2.0), _round(1.5)],  # CT2's lanes win round 2
    }
    median, low, high = best_ratio(
        results, ("prism-int8", "prism-int8-lanes"), ("ct2-int8", "ct2-int8-lanes")
    )
    # round 1: 32/1.0 over 32/1.5 = 1.5; round 2: 32/2.0 over 32/1.5 = 0.75
    assert (low, high) == pytest.approx((0.75, 1.5))
    assert median == pytest.approx(1.125)


def test_an_engine_that_did_not_run_is_left_out_and_none_means_no_pairing():
    results = {"prism-int8": [_round(1.0)], "ct2-int8": [_round(2.0)]}
    assert best_ratio(results, ("prism-int8", "prism-int8-lanes"), ("ct2-int8",)) == (
        pytest.approx(2.0),
        pytest.approx(2.0),
        pytest.approx(2.0),
    )
    assert best_ratio(results, ("prism-int8-lanes",), ("ct2-int8",)) is None
