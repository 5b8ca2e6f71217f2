from explain import slots
from explain.evidence import compute_evidence
from explain.items import Item
from explain.rendering import fill_slots

ET = Item(
    "E.T. the Extra-Terrestrial (1982)",
    "1",
    {"genres": ["Children's", "Drama", "Fantasy", "Sci-Fi"]},
)
STAR_WARS = Item("Star Wars (1977)", "2", {"genres": ["Action", "Adventure", "Sci-Fi"]})
THING = Item("Thing, The (1982)", "3", {"genres": ["Action", "Horror", "Sci-Fi"]})
BTTF = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"], "year": 1985})
RECENT_FIRST = [THING, STAR_WARS, ET]


def values_for(recent_first, item, used=None):
    evidence = compute_evidence(recent_first, item)
    used = len(recent_first) if used is None else used
    return slots.slot_values(recent_first, item, evidence, used), evidence


def test_evidence_measures_support_by_the_claim_rules():
    ev = compute_evidence(RECENT_FIRST, BTTF)
    assert [(g.genre, g.count, g.level) for g in ev.shared] == [("Sci-Fi", 3, "strong")]
    assert ev.item_only == ("Comedy",)
    assert (ev.decade, ev.dated, ev.decade_count, ev.era) == (1980, 3, 2, "basic")
    assert ev.era_examples == (0, 2)  # The Thing and E.T., most recent first
    assert ev.similar == (0, 1) and ev.similar_genres == (("Sci-Fi",), ("Sci-Fi",))
    assert ev.overlapping == 3 and not ev.novelty


def test_only_supported_claims_get_a_slot():
    horror = [Item(f"H{k} (19{60 + k})", None, {"genres": ["Horror"]}) for k in range(9)]
    old = Item("Old Comedy (1983)", None, {"genres": ["Comedy"]})
    nightmare = Item("A Nightmare on Elm Street (1984)", None, {"genres": ["Horror"]})
    values, ev = values_for([*horror, old], nightmare)
    # One 1980s film in ten dated ones: no era slot, so no era claim can be written.
    assert ev.era == "none" and "<dec>" not in values and "<decs>" not in values
    assert values["<g1>"] == "horror" and ev.shared[0].level == "strong"
    # A genre one film in twenty has is not shared.
    sparse = [Item(f"D{k}", None, {"genres": ["Drama"]}) for k in range(19)]
    values, _ = values_for([*sparse, Item("W", None, {"genres": ["War"]})],
                           Item("X", None, {"genres": ["War"]}))  # fmt: skip
    # ... nor is it missing from the history: neither slot exists for it.
    assert "<g1>" not in values and "<a1>" not in values


def test_similar_titles_must_share_a_genre_not_just_a_decade():
    ran = Item("Ran (1985)", None, {"genres": ["War"]})
    assert compute_evidence([ran], BTTF).similar == ()
    blade = Item("Blade Runner (1982)", None, {"genres": ["Sci-Fi"]})
    assert compute_evidence([blade], BTTF).similar == (0,)


def test_titles_fill_as_written_in_a_sentence():
    values, _ = values_for(RECENT_FIRST, BTTF)
    assert values["<s1>"] == "The Thing" and values["<h3>"] == "E.T. the Extra-Terrestrial"
    unnamed = Item("unknown", None, {"genres": ["Sci-Fi"]})
    values, _ev = values_for([unnamed, *RECENT_FIRST], Item("(no title)", None, {}))
    assert values["<item>"] == "this title" and "<h1>" not in values


def test_fill_fixes_articles_and_capitals():
    values, _ = values_for(RECENT_FIRST, BTTF)
    filled = fill_slots("<item> is a <g1> film from the <dec>, like <s1>. a <a1> too.", values)
    assert filled.text == (
        "Back to the Future is a sci-fi film from the 1980s, like The Thing. A comedy too."
    )
    assert filled.unfilled == ()
    assert fill_slots("an <g1> pick", values).text == "A sci-fi pick"
    action = {"<g1>": "action"}
    assert fill_slots("a <g1> film", action).text == "An action film"


def test_a_title_with_its_own_article_never_gets_a_second_one():
    values = {"<item>": "Heat", "<s1>": "The Devil's Advocate", "<h2>": "Les Misérables"}
    assert fill_slots("<item> offers the <s1> feel.", values).text == (
        "Heat offers The Devil's Advocate feel."
    )
    assert fill_slots("The <h2> fan in you will like <item>.", values).text == (
        "Les Misérables fan in you will like Heat."
    )
    assert fill_slots("Like the <s1>, <item> grips.", values).text == (
        "Like The Devil's Advocate, Heat grips."
    )


def test_unfillable_slots_are_reported_and_removed():
    values, _ = values_for(RECENT_FIRST, BTTF)
    filled = fill_slots("<item> matches <g3> and <h9>.", values)
    assert filled.unfilled == ("<g3>", "<h9>")
    assert "<" not in filled.text


def test_every_slot_matches_the_slot_pattern():
    assert all(slots.SLOT_PATTERN.fullmatch(s) for s in slots.ALL_SLOTS)
    assert len(set(slots.ALL_SLOTS)) == len(slots.ALL_SLOTS)


def test_titles_with_their_own_punctuation_keep_their_case():
    values = {"<item>": "E.T. the Extra-Terrestrial", "<s1>": "Mars Attacks!", "<g1>": "sci-fi"}
    filled = fill_slots("<item> is a <g1> classic. <g1> fans liked <s1> is the idea.", values)
    assert filled.text == (
        "E.T. the Extra-Terrestrial is a sci-fi classic. Sci-fi fans liked Mars Attacks! is the idea."
    )


def test_a_slot_repeated_in_a_list_is_said_once():
    values = {"<item>": "Alien", "<g1>": "sci-fi"}
    assert fill_slots("If you enjoy <g1> and <g1>, <item> belongs on your list.", values).text == (
        "If you enjoy sci-fi, Alien belongs on your list."
    )
    assert fill_slots("Like <item>, <item> is fun.", values).text == "Like Alien, Alien is fun."


def test_a_title_ending_in_its_own_stop_ends_the_sentence():
    values = {"<item>": "Heat", "<h1>": "Mars Attacks!", "<h2>": "When Harry Met Sally..."}
    assert fill_slots("<item> follows <h1>.", values).text == "Heat follows Mars Attacks!"
    assert fill_slots("After <h2>, try <item>.", values).text == (
        "After When Harry Met Sally..., try Heat."
    )
