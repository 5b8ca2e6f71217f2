from explain.evidence import compute_evidence
from explain.items import Item
from training.data.sparse import BARE, COLD_START, sparse_requests, sparse_variant
from training.data.types import Sample

ALIEN = Item("Alien (1979)", "1", {"genres": ["Horror", "Sci-Fi"], "year": 1979})
HEAT = Item("Heat (1995)", "2", {"genres": ["Crime"], "year": 1995})


def samples(n):
    return [Sample(f"u{k}", (ALIEN, HEAT), HEAT, k) for k in range(n)]


def test_every_nth_request_alternates_between_bare_and_cold_start():
    variants = [sparse_variant(k, 4) for k in range(16)]
    assert variants == [None, None, None, BARE] + [None] * 3 + [COLD_START] + [
        None,
        None,
        None,
        BARE,
        None,
        None,
        None,
        COLD_START,
    ]
    assert all(sparse_variant(k, 0) is None for k in range(8))


def test_bare_requests_keep_titles_and_years_and_lose_genres():
    out = sparse_requests(samples(8), 4)
    assert out[:3] == samples(3)  # untouched
    bare = out[3]
    assert [h.title for h in bare.history] == ["Alien (1979)", "Heat (1995)"]
    assert all(h.features == () for h in (*bare.history, bare.item))
    assert bare.item.year == 1995  # from the title, as a bare title string gives it
    assert bare.sample_id == samples(4)[3].sample_id
    cold = out[7]
    assert cold.history == () and cold.item == HEAT
    ev = compute_evidence(list(reversed(bare.history)), bare.item)
    assert ev.shared == () and not ev.similar_by_content


def test_no_rewrite_when_off():
    assert sparse_requests(samples(5), 0) == samples(5)
