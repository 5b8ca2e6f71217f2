"""The agreement figures a precision variant is gated on."""

import pytest

from explain.types import Explanation
from training.variants import agreement


def answer(*tokens: int) -> Explanation:
    return Explanation("x", True, 3, len(tokens), 1, token_ids=tokens)


def test_identical_answers_agree_fully() -> None:
    same = [answer(0, 5, 6, 2), answer(0, 7, 2)]
    result = agreement(same, list(same))
    assert (result.compared, result.sequences_identical, result.tokens_identical) == (2, 1.0, 1.0)


def test_one_changed_token_counts_against_the_sequence_and_one_token() -> None:
    reference = [answer(0, 5, 6, 2), answer(0, 7, 2)]
    candidate = [answer(0, 5, 9, 2), answer(0, 7, 2)]
    result = agreement(reference, candidate)
    assert result.sequences_identical == 0.5
    assert result.tokens_identical == pytest.approx(6 / 7)


def test_a_shorter_answer_counts_its_missing_tokens_as_different() -> None:
    result = agreement([answer(0, 5, 6, 2)], [answer(0, 5, 2)])
    # positions 0 and 1 match; over the longer sequence's 4 positions
    assert result.sequences_identical == 0.0 and result.tokens_identical == 0.5


def test_answers_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 reference answers but 1"):
        agreement([answer(0, 2), answer(0, 2)], [answer(0, 2)])
