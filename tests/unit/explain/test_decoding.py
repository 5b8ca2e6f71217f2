import numpy as np

from explain.decoding import top_stable


def test_top_stable_is_a_stable_argsort_of_the_best():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.normal(size=(3, 500)).astype(np.float32)
        # Ties, across the boundary too: rounding makes many equal values.
        scores = np.round(scores, 1)
        scores[:, 7] = -1e9
        for n in (1, 8, 16, 500, 600):
            want = np.argsort(-scores, axis=1, kind="stable")[:, :n]
            assert np.array_equal(top_stable(scores, n), want)


# --- greedy picks from the graph's candidates --------------------------------------------

from explain.decoding import Candidates, GenerationIds, choose, process_logits  # noqa: E402

IDS = GenerationIds(decoder_start_token_id=2, eos_token_id=2, pad_token_id=1, forced_bos_token_id=0)


def _argmax(logits, counts, banned, min_new_tokens, ids=IDS):
    scores = logits.astype(np.float32).copy()
    process_logits(scores, counts, ids, banned, 1, min_new_tokens)
    return scores.argmax(axis=-1)


def _top(logits, k, rng):
    """The k best per row, best first, ties in a random order (as a GPU's TopK may give)."""
    rows = logits.shape[0]
    ids = np.empty((rows, k), dtype=np.int64)
    for row in range(rows):
        order = rng.permutation(logits.shape[1])
        ranked = order[np.argsort(-logits[row, order], kind="stable")]
        ids[row] = ranked[:k]
    return Candidates(ids, np.take_along_axis(logits, ids, axis=1), logits.shape[1])


def test_choose_picks_what_the_full_argmax_picks_and_reads_the_logits_only_when_it_must():
    rng = np.random.default_rng(0)
    reads = settled_only = 0
    for trial in range(400):
        rows, vocab, k = 6, 40, 5
        # rounded scores make ties, inside the candidates and across their boundary
        logits = np.round(rng.normal(size=(rows, vocab)), 1 if trial % 2 else 3)
        logits = logits.astype(np.float16 if trial % 3 == 0 else np.float32)
        counts = rng.integers(0, 4, size=rows)
        min_new = int(rng.integers(0, 3))
        # bans drawn from the best tokens, so some rows lose every candidate
        banned = [
            [int(t) for t in np.argsort(-logits[r])[: int(rng.integers(0, 8))]] for r in range(rows)
        ]
        calls = []

        def full(logits=logits, calls=calls):
            calls.append(1)
            return logits

        got = choose(_top(logits, k, rng), full, counts, IDS, banned, min_new)
        assert np.array_equal(got, _argmax(logits, counts, banned, min_new))
        reads += len(calls)
        settled_only += not calls
        assert len(calls) <= 1
    assert reads > 0 and settled_only > 0  # both ways were taken


def test_choose_without_candidates_is_the_full_argmax_and_bos_is_forced():
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 4.0, 9.0, 1.0]], dtype=np.float32)
    counts = np.array([1, 0])
    got = choose(None, lambda: logits, counts, IDS, [[1], []], 0)
    assert got.tolist() == [3, 0]  # token 1 banned; row 2's first token is the forced BOS
    top = Candidates(
        np.array([[1, 3, 2], [2, 0, 1]]), np.array([[3.0, 2.0, 1.0], [9.0, 5.0, 4.0]]), 4
    )

    def never():
        raise AssertionError("the candidates settle both rows")

    assert choose(top, never, counts, IDS, [[1], []], 0).tolist() == [3, 0]
    # before min_new_tokens EOS (2) is ruled out, and so is a non-finite candidate row
    logits[0, 2] = 10.0
    top = Candidates(np.array([[2, 1], [2, 0]]), np.array([[10.0, 3.0], [9.0, 5.0]]), 4)
    assert choose(top, lambda: logits, np.array([1, 1]), IDS, [[], []], 3).tolist() == [1, 0]
    logits[1, 2] = np.nan
    top = Candidates(np.array([[2, 1], [2, 0]]), np.array([[10.0, 3.0], [np.nan, 5.0]]), 4)
    want = _argmax(logits, np.array([1, 1]), [[], []], 0)
    assert choose(top, lambda: logits, np.array([1, 1]), IDS, [[], []], 0).tolist() == list(want)
