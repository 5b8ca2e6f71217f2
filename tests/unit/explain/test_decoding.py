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
