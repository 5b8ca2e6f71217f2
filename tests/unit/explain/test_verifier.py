import pytest

from explain import slots
from explain.evidence import compute_evidence, similar_capable
from explain.items import Item
from explain.rendering import fill_slots
from explain.verifier import (
    BAD_TITLE,
    UNFILLED,
    UNKNOWN_SENTENCE,
    UNSUPPORTED,
    Verifier,
    claim_evidence,
    evidence_sentence,
    load_inventory,
    save_inventory,
)

THING = Item("Thing, The (1982)", "3", {"genres": ["Action", "Horror", "Sci-Fi"]})
STAR_WARS = Item("Star Wars (1977)", "2", {"genres": ["Action", "Adventure", "Sci-Fi"]})
ET = Item("E.T. the Extra-Terrestrial (1982)", "1", {"genres": ["Children's", "Sci-Fi"]})
CASABLANCA = Item("Casablanca (1942)", "5", {"genres": ["Drama", "Romance"]})
BTTF = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"]})


def request(recent_first, item):
    evidence = compute_evidence(recent_first, item)
    values = slots.slot_values(recent_first, item, evidence, len(recent_first))
    return values, evidence, similar_capable(recent_first, item)


def verdict(template, recent_first=(THING, STAR_WARS, ET, CASABLANCA), item=BTTF, inventory=None):
    verdict, text = Verifier(inventory).check(template, *request(list(recent_first), item))
    return verdict.problem, text


def test_a_true_well_formed_sentence_passes_with_its_claims():
    problem, text = verdict("<item> is a <g1> film, like others you have watched.")
    assert problem is None
    assert text == "Back to the Future is a sci-fi film, like others you have watched."


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        # "Clearly" needs strong support: sci-fi is 3 of 4 films, comedy 1 (no slot at all).
        ("<item> brings the <g2> you clearly love.", UNFILLED),
        # A history title with no genre in common cannot be "in the same vein".
        ("<item> is very much in the same vein as <h4>.", UNSUPPORTED),
        # Most of the history shares the item's genres: not "a fresh pick".
        ("<item> is a fresh pick that could widen your taste.", UNSUPPORTED),
        # The 1980s: 2 of 4 dated films back "from the 1980s", not "clearly".
        ("<item> is a <decs> film, and the <dec> clearly suit your taste.", UNSUPPORTED),
        ("<item> captures the  feel.", "dangling_slot"),
        ("<item> is is a <g1> film.", "stutter"),
        ("<g3> .", "no_words"),
    ],
)
def test_each_problem_is_named(template, problem):
    assert verdict(template)[0] == problem


def test_strength_follows_the_rules():
    horror = [Item(f"H{k} (19{60 + k})", None, {"genres": ["Horror"]}) for k in range(9)]
    old = Item("Old Comedy (1983)", None, {"genres": ["Comedy"]})
    nightmare = Item("A Nightmare on Elm Street (1984)", None, {"genres": ["Horror"]})
    history = [*horror, old]
    assert verdict("<item> brings the <g1> you clearly love.", history, nightmare)[0] is None
    assert verdict("You clearly love this kind of film.", history, nightmare)[0] == UNSUPPORTED
    two_of_five = [Item(f"S{k}", None, {"genres": ["Sci-Fi"]}) for k in range(2)] + [
        Item(f"D{k}", None, {"genres": ["Drama"]}) for k in range(3)
    ]
    assert verdict("<item> is a <g1> film, like others you have watched.", two_of_five)[0] is None
    assert verdict("You clearly enjoy <g1>, so <item> is worth a look.", two_of_five)[0] == (
        UNSUPPORTED
    )


def test_an_era_claim_needs_the_era_and_intensity_needs_a_strong_one():
    dated = [Item(f"E{k} (198{k})", None, {}) for k in range(3)] + [Item("N (1995)", None, {})]
    item = Item("Heat (1985)", None, {})
    assert verdict("<item> comes from the <dec>, like other films you have watched.",
                   dated, item)[0] is None  # fmt: skip
    assert verdict("Since you keep returning to the <dec>, <item> is a natural pick.",
                   dated, item)[0] is None  # fmt: skip  # 3 of 4: strong
    fewer = [*dated[:2], Item("N (1995)", None, {}), Item("M (1999)", None, {})]
    assert verdict("Since you keep returning to the <dec>, <item> is a natural pick.",
                   fewer, item)[0] == UNSUPPORTED  # fmt: skip  # 2 of 4: basic only


def test_a_sentence_the_teacher_never_wrote_is_refused(tmp_path):
    save_inventory(tmp_path, ["<item> is a <g1> film, like others you have watched. Enjoy!"])
    inventory = load_inventory(tmp_path)
    ok = "<item> is a <g1> film, like others  you have watched."
    assert verdict(ok.replace("  ", " "), inventory=inventory)[0] is None
    recombined = "<item> is a <g1> film, like <s1> you have watched."
    assert verdict(recombined, inventory=inventory)[0] == UNKNOWN_SENTENCE
    assert load_inventory(tmp_path / "missing") is None


def test_a_double_article_or_an_inverted_title_is_refused():
    values = {"<item>": "Heat", "<h1>": "The Thing"}
    found, text = Verifier(None).check(
        "<item> follows a the <h1> night.", values, *request([THING], BTTF)[1:]
    )
    assert (found.problem, text) == (BAD_TITLE, "Heat follows a The Thing night.")
    inverted = {"<item>": "Godfather, The", "<h1>": "The Thing"}
    assert (
        Verifier(None).check("<item> is up next.", inverted, *request([THING], BTTF)[1:])[0].problem
        == BAD_TITLE
    )


def test_the_evidence_sentence_is_the_first_the_request_supports():
    values, evidence, similar = request([THING, STAR_WARS, ET], BTTF)
    assert (
        evidence_sentence(values, evidence, similar)
        == "<item> shares <g1> with <s1>, which you watched."
    )
    values, evidence, similar = request(
        [CASABLANCA], Item("Heat (1995)", None, {"genres": ["Crime"]})
    )
    sentence = evidence_sentence(values, evidence, similar)
    # One film is not "your other recent watches"; two are.
    assert fill_slots(sentence, values).text == "Heat was picked for you with Casablanca in mind."
    values, evidence, similar = request(
        [THING, CASABLANCA], Item("Heat (1995)", None, {"genres": ["Crime"]})
    )
    assert fill_slots(evidence_sentence(values, evidence, similar), values).text == (
        "Heat was picked for you with The Thing and your other recent watches in mind."
    )
    # A cold start is never told what it watched.
    values, evidence, similar = request([], Item("Heat (1995)", None, {"genres": ["Crime"]}))
    assert fill_slots(evidence_sentence(values, evidence, similar), values).text == (
        "Heat is a crime film."
    )
    values, evidence, similar = request([], Item("Heat", None, {}))
    assert evidence_sentence(values, evidence, similar) == "<item> was picked for you."


def test_claim_evidence_names_the_facts_behind_each_claim():
    recent_first = [THING, STAR_WARS, ET, CASABLANCA]
    values, evidence, similar = request(recent_first, BTTF)
    template = "<item> is a <g1> film, like <s1>. If you enjoyed <s1>, try it."
    found, _ = Verifier(None).check(template, values, evidence, similar)
    entries = claim_evidence(found.claims, evidence, recent_first, BTTF)
    assert entries == [
        {
            "claim": "shared_genre",
            "genre": "Sci-Fi",
            "share": "3/4",
            "strength": "strong",
            "history": ["The Thing", "Star Wars", "E.T. the Extra-Terrestrial"],
        },
        {"claim": "similar_title", "titles": [{"title": "The Thing", "shared_genres": ["Sci-Fi"]}]},
    ]


def test_a_slot_said_twice_in_a_list_is_read_as_said_once(tmp_path):
    save_inventory(tmp_path, ["With <g1> at its core, <item> fits your taste well."])
    inventory = load_inventory(tmp_path)
    problem, text = verdict("With <g1> and <g1> at its core, <item> fits your taste well.",
                            inventory=inventory)  # fmt: skip
    assert (
        problem is None
        and text == "With sci-fi at its core, Back to the Future fits your taste well."
    )
