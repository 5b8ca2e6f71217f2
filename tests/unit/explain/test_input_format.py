import pytest

from explain import input_format as prompt
from explain.items import Item


class WordEncoder:
    """Counts whitespace words as tokens: enough to test the budget logic exactly."""

    def encode(self, text):
        return [0, *range(len(text.split())), 2]


def history(n):
    return [Item(f"Film {k} (19{50 + k % 40})", str(k), {"genres": ["Drama"]}) for k in range(n)]


ITEM = Item("Target Film (1990)", "t", {"genres": ["Drama", "War"], "director": "Someone"})


def test_item_and_evidence_come_first_and_history_is_most_recent_first():
    built = prompt.build_input(history(3), ITEM, WordEncoder(), prompt.InputConfig())
    lines = built.text.splitlines()
    assert lines[0].startswith(
        "item: <item> Target Film (1990) · <g1> drama · <a1> war · director Someone"
    )
    assert lines[1] == (
        "evidence: history 3 · genre <g1> 3/3 strong · era 1990s 0/3 none · "
        "similar <s1> <g1> · <s2> <g1> · new no"
    )
    assert (
        lines[2].index("<h1> Film 2")
        < lines[2].index("<h2> Film 1")
        < lines[2].index("<h3> Film 0")
    )
    assert built.history_used == 3
    assert built.slot_values["<h1>"] == "Film 2"


def test_history_is_cut_to_max_history_then_to_the_token_budget_oldest_first():
    items = history(60)
    built = prompt.build_input(items, ITEM, WordEncoder(), prompt.InputConfig(max_history=50))
    assert built.history_used == 50 and built.history_given == 60
    assert "Film 10 " in built.text and "Film 9 " not in built.text

    tight = prompt.build_input(items, ITEM, WordEncoder(), prompt.InputConfig(max_input_tokens=60))
    assert len(tight.input_ids) <= 60
    assert 0 < tight.history_used < 50
    assert "Target Film" in tight.text  # the recommended item is never dropped
    assert f"Film {59 - tight.history_used + 1} " in tight.text  # the newest survive
    assert f"<h{tight.history_used + 1}>" not in tight.slot_values


def test_a_budget_smaller_than_the_item_cuts_the_tail_but_keeps_bos_and_eos():
    built = prompt.build_input(
        history(5), ITEM, WordEncoder(), prompt.InputConfig(max_input_tokens=8)
    )
    assert len(built.input_ids) == 8 and built.input_ids[0] == 0 and built.input_ids[-1] == 2
    assert built.history_used == 0


def test_empty_history_still_builds_a_content_based_input():
    built = prompt.build_input([], ITEM, WordEncoder(), prompt.InputConfig())
    assert "evidence: history 0 · era 1990s 0/0 none · new yes" in built.text
    assert built.history_used == 0 and "<s1>" not in built.slot_values


def test_format_descriptor_round_trips_and_unknown_formats_are_refused():
    config = prompt.InputConfig(max_history=20, max_input_tokens=128)
    assert prompt.check_format(prompt.format_descriptor(config)) == config
    with pytest.raises(prompt.UnsupportedFormatError, match="plain/3"):
        prompt.check_format({"name": "plain", "version": 3, "config": {}})


def test_genres_in_the_request_do_not_cost_history_titles():
    """History entries are titles only (the evidence line summarises their genres): with
    genres sent, only the item's own line grows, and the newest titles still fill the
    budget."""
    rich = history(40)
    bare = [Item(h.title, h.item_id, {}) for h in rich]
    config = prompt.InputConfig(max_input_tokens=96)
    with_genres = prompt.build_input(rich, ITEM, WordEncoder(), config)
    without = prompt.build_input(bare, Item(ITEM.title, "t", {}), WordEncoder(), config)
    listed = with_genres.text.split("history:")[1]
    assert without.text.split("history:")[1].startswith(listed)
    assert with_genres.history_used >= 10


def test_catalogue_titles_are_written_as_a_sentence_would():
    godfather = Item("Godfather, The (1972)", "g", {"genres": ["Crime", "Drama"]})
    amelie = Item("Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "a", {})
    built = prompt.build_input([amelie], godfather, WordEncoder(), prompt.InputConfig())
    assert built.text.startswith("item: <item> The Godfather (1972) · <a1> crime · <a2> drama")
    assert "<h1> Amelie ;" in built.text
    assert built.slot_values["<item>"] == "The Godfather"


def test_the_recommended_item_is_no_evidence_for_itself():
    heat = Item("Heat (1995)", None, {"genres": ["Crime"]})
    alien = Item("Alien (1979)", None, {"genres": ["Horror"]})
    for past in (heat, Item("Heat", None, {"genres": ["Crime"]}), Item("HEAT (1995)", "x", {})):
        built = prompt.build_input([alien, past], heat, WordEncoder(), prompt.InputConfig())
        assert built.history_used == 1 and built.slot_values["<h1>"] == "Alien"
        assert "<h2>" not in built.slot_values and "<s1>" not in built.slot_values
        assert built.evidence.history_size == 1 and not built.evidence.novelty
    # Watched before and nothing else: not "a fresh pick" (an empty history otherwise is).
    alone = prompt.build_input([heat], heat, WordEncoder(), prompt.InputConfig())
    assert alone.history_used == 0 and not alone.evidence.novelty
    assert "new no" in alone.text


def test_item_ids_decide_identity_and_other_years_are_other_films():
    heat = Item("Heat (1995)", "9", {"genres": ["Crime"]})
    remake = Item("Heat (1986)", None, {"genres": ["Crime"]})
    other_id = Item("Heat (1995)", "10", {"genres": ["Crime"]})
    same_id = Item("Heat: Director's Cut", "9", {"genres": ["Crime"]})
    built = prompt.build_input(
        [remake, other_id, same_id], heat, WordEncoder(), prompt.InputConfig()
    )
    assert built.history_used == 2
    assert [p.title for p in built.window] == ["Heat (1995)", "Heat (1986)"]
    unknown = Item("unknown", None, {})
    kept = prompt.build_input(
        [unknown], Item("unknown", None, {}), WordEncoder(), prompt.InputConfig()
    )
    assert kept.history_used == 1  # placeholder titles say nothing about identity


def test_a_film_watched_again_and_again_counts_once_at_its_latest_watch():
    alien = Item("Alien (1979)", None, {"genres": ["Horror"], "year": 1979})
    jaws = Item("Jaws (1975)", None, {"genres": ["Horror"], "year": 1975})
    item = Item("The Fog (1980)", None, {"genres": ["Horror"], "year": 1980})
    log = [alien, jaws, alien, Item("Alien", None, {"genres": ["Horror"]}), alien]
    built = prompt.build_input(log, item, WordEncoder(), prompt.InputConfig())
    assert [p.title for p in built.window] == ["Alien (1979)", "Jaws (1975)"]
    assert built.history_used == 2 and built.text.count("Alien") == 1
    assert built.evidence.history_size == 2 and built.evidence.with_genres == 2
    # One film five times was "strong" horror (5/5) and an era of five 1970s films.
    assert built.evidence.shared[0].count == 2 and built.evidence.shared[0].level == "basic"
    assert built.evidence.decade_count == 0 and built.evidence.dated == 2
    # `max_history` counts distinct films.
    many = [*history(3), *history(3), *history(3)]
    window = prompt.recent_window(many, prompt.InputConfig(max_history=2))
    assert [p.title for p in window] == ["Film 2 (1952)", "Film 1 (1951)"]
