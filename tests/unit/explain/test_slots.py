from explain import slots
from explain.evidence import compute_evidence
from explain.items import Item
from explain.rendering import evidence_sentence, fill_slots, render

ET = Item(
    "E.T. the Extra-Terrestrial (1982)",
    "1",
    {"genres": ["Children's", "Drama", "Fantasy", "Sci-Fi"]},
)
STAR_WARS = Item("Star Wars (1977)", "2", {"genres": ["Action", "Adventure", "Sci-Fi"]})
THING = Item("Thing, The (1982)", "3", {"genres": ["Action", "Horror", "Sci-Fi"]})
BTTF = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"], "year": 1985})
RECENT_FIRST = [THING, STAR_WARS, ET]


def evidence():
    return compute_evidence(RECENT_FIRST, BTTF)


def test_evidence_lists_shared_features_by_frequency_and_the_decade():
    ev = evidence()
    assert ev.shared == (("Sci-Fi", 3),)
    assert ev.item_only == ("Comedy",)
    assert ev.decade == 1980
    assert ev.decade_count == 2
    # The Thing and E.T. share Sci-Fi and the decade; The Thing is more recent.
    assert ev.similar == (0, 2)


def test_similar_items_need_something_in_common():
    unrelated = Item("Annie Hall (1977)", None, {"genres": ["Romance"]})
    ev = compute_evidence([unrelated], BTTF)
    assert ev.similar == ()
    assert ev.shared == ()


def test_fill_uses_request_values_and_fixes_articles_and_capitals():
    values = slots.slot_values(RECENT_FIRST, BTTF, evidence(), history_used=3)
    filled = fill_slots("<item> is a <g1> film from the <dec>, like <s1>. a <a1> too.", values)
    assert (
        filled.text
        == "Back to the Future is a sci-fi film from the 1980s, like The Thing. A comedy too."
    )
    assert filled.unfilled == ()
    assert fill_slots("an <g1> pick", values).text == "A sci-fi pick"
    action = slots.slot_values(
        [STAR_WARS],
        Item("Heat (1995)", None, {"genres": ["Action"]}),
        compute_evidence([STAR_WARS], Item("Heat (1995)", None, {"genres": ["Action"]})),
        1,
    )
    assert fill_slots("a <g1> film", action).text == "An action film"


def test_unfillable_slots_are_reported_and_removed():
    values = slots.slot_values(RECENT_FIRST, BTTF, evidence(), history_used=3)
    filled = fill_slots("<item> matches <g3> and <h9>.", values)
    assert filled.unfilled == ("<g3>", "<h9>")
    assert "<" not in filled.text


def test_every_slot_matches_the_slot_pattern():
    assert all(slots.SLOT_PATTERN.fullmatch(s) for s in slots.ALL_SLOTS)
    assert len(set(slots.ALL_SLOTS)) == len(slots.ALL_SLOTS)


def test_titles_with_their_own_punctuation_keep_their_case():
    et = Item("E.T. the Extra-Terrestrial (1982)", None, {"genres": ["Sci-Fi"]})
    mars = Item("Mars Attacks! (1996)", None, {"genres": ["Comedy", "Sci-Fi"]})
    values = {"<item>": et.display_title, "<s1>": mars.display_title, "<g1>": "sci-fi"}
    filled = fill_slots("<item> is a <g1> classic. <g1> fans liked <s1> is the idea.", values)
    assert (
        filled.text
        == "E.T. the Extra-Terrestrial is a sci-fi classic. Sci-fi fans liked Mars Attacks! is the idea."
    )


def test_the_evidence_sentence_uses_only_what_the_request_can_fill():
    values = slots.slot_values(RECENT_FIRST, BTTF, evidence(), history_used=3)
    assert fill_slots(evidence_sentence(values), values).text == (
        "Back to the Future shares sci-fi with The Thing, which you watched."
    )
    watched = {"<item>": "Heat", "<h1>": "Alien"}
    assert (
        fill_slots(evidence_sentence(watched), watched).text
        == "Heat was picked for you from what you have watched."
    )
    # A cold start (no history slot) is never told what it watched.
    cold = {"<item>": "Heat", "<a1>": "crime"}
    assert fill_slots(evidence_sentence(cold), cold).text == "Heat is a crime film."
    bare = {"<item>": "Heat"}
    assert fill_slots(evidence_sentence(bare), bare).text == "Heat was picked for you."


def test_a_slot_repeated_in_a_list_is_said_once():
    values = {"<item>": "Alien", "<g1>": "sci-fi"}
    assert fill_slots("If you enjoy <g1> and <g1>, <item> belongs on your list.", values).text == (
        "If you enjoy sci-fi, Alien belongs on your list."
    )
    # A slot used twice in different places stays.
    assert fill_slots("Like <item>, <item> is fun.", values).text == "Like Alien, Alien is fun."


def test_an_unusable_template_is_served_as_the_evidence_sentence_and_says_why():
    values = slots.slot_values(RECENT_FIRST, BTTF, evidence(), history_used=3)
    served = render("<item> captures the  feel right ways.", values)
    assert served.fallback and served.defect == "dangling_slot"
    assert served.text == "Back to the Future shares sci-fi with The Thing, which you watched."
    # The model's own text is kept beside it, for evaluation to score.
    kept = render("<item> captures the  feel.", values)
    assert kept.fallback and kept.model_text == "Back to the Future captures the feel."
    wordless = render("<dec> .", {"<item>": "Heat"})
    assert wordless.defect == "no_words" and wordless.text == "Heat was picked for you."
    good = render("<item> is a <g1> film.", values)
    assert not good.fallback and good.defect is None


def test_similarity_by_decade_alone_is_not_similarity_by_content():
    ran = Item("Ran (1985)", None, {"genres": ["War"]})  # the item's decade, no shared genre
    blade = Item("Blade Runner (1982)", None, {"genres": ["Sci-Fi"]})
    by_decade = compute_evidence([ran], BTTF)
    assert by_decade.similar and by_decade.similar_overlap == 0
    assert not by_decade.similar_by_content
    by_genre = compute_evidence([blade], BTTF)
    assert by_genre.similar_overlap == 1 and by_genre.similar_by_content
