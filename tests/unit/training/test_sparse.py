from explain.evidence import compute_evidence
from explain.items import Item
from training.data.sparse import (
    BARE,
    BARE_CATALOGUE,
    CATALOGUE,
    COLD_START,
    NATURAL,
    request_form,
    sparse_requests,
)
from training.data.types import Sample

THING = Item("The Thing (1982)", "1", {"genres": ["Horror", "Sci-Fi"], "year": 1982})
HEAT = Item("Heat (1995)", "2", {"genres": ["Crime"], "year": 1995})
SAMURAI = Item("Seven Samurai (1954)", "3", {"genres": ["Action", "Drama"], "year": 1954})
ALTERNATES = {"3": "Shichinin no samurai"}


def samples(n):
    return [Sample(f"u{k}", (THING, SAMURAI), HEAT, k) for k in range(n)]


def test_forms_cycle_by_position_half_with_genres_half_without():
    forms = [request_form(k) for k in range(16)]
    cycle = [COLD_START, BARE, BARE_CATALOGUE, BARE_CATALOGUE, CATALOGUE, CATALOGUE]
    assert forms[:8] == [*cycle, NATURAL, NATURAL] and forms[8:] == forms[:8]
    assert all(request_form(k, enabled=False) == NATURAL for k in range(8))


def test_each_form_is_written_as_real_catalogues_write_it():
    out = sparse_requests(samples(8), alternates=ALTERNATES)
    cold, bare, bare_catalogue, catalogue, natural = out[0], out[1], out[2], out[4], out[6]
    assert cold.history == () and cold.item == HEAT
    assert [h.title for h in bare.history] == ["The Thing (1982)", "Seven Samurai (1954)"]
    assert all(h.features == () for h in (*bare.history, bare.item))
    assert bare.item.year == 1995  # from the title, as a bare title string gives it
    assert [h.title for h in bare_catalogue.history] == [
        "Thing, The (1982)",
        "Seven Samurai (Shichinin no samurai) (1954)",
    ]
    assert bare_catalogue.history[0].features == ()
    assert catalogue.history[0].title == "Thing, The (1982)"
    assert catalogue.history[0].features == ("Horror", "Sci-Fi")
    assert natural == samples(8)[6]
    # Every form reads back to the same display titles.
    for sample in out[1:]:
        assert [h.display_title for h in sample.history] == ["The Thing", "Seven Samurai"]
    assert [s.sample_id for s in out] == [s.sample_id for s in samples(8)]


def test_bare_requests_carry_no_genre_evidence():
    bare = sparse_requests(samples(2), alternates={})[1]
    ev = compute_evidence(list(reversed(bare.history)), bare.item)
    assert ev.shared == () and ev.similar == () and not ev.novelty


def test_no_rewrite_when_off():
    assert sparse_requests(samples(5), alternates=ALTERNATES, enabled=False) == samples(5)
