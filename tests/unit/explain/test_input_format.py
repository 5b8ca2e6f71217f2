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
