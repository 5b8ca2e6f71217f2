"""Delexicalising teacher text into the student's slot templates."""

from explain import slots
from explain.evidence import compute_evidence
from explain.items import Item
from explain.rendering import fill_slots
from training.delexicalise import delexicalise

# The paper's case study, most recent first: The Thing, Star Wars, E.T. -> Back to the Future.
THING, STAR_WARS, ET = (
    Item(title, str(k), {"genres": genres})
    for k, (title, genres) in enumerate(
        [
            ("Thing, The (1982)", ["Action", "Horror", "Sci-Fi"]),
            ("Star Wars (1977)", ["Action", "Adventure", "Sci-Fi"]),
            ("E.T. the Extra-Terrestrial (1982)", ["Children's", "Drama", "Fantasy", "Sci-Fi"]),
        ],
        start=1,
    )
)
RECENT_FIRST = [THING, STAR_WARS, ET]
BTTF = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"], "year": 1985})


def evidence():
    return compute_evidence(RECENT_FIRST, BTTF)


def test_delexicalise_maps_titles_features_and_decades_to_slots():
    ev = evidence()
    text = (
        "Back to the Future is a science fiction comedy from the 1980s, "
        "like The Thing and Star Wars, made in 1985 - pure '80s fun."
    )
    out = delexicalise(text, RECENT_FIRST, BTTF, ev, history_used=3)
    assert (
        out
        == "<item> is a <g1> <a1> from the <dec>, like <s1> and <s2>, made in <year> - pure <decs> fun."
    )
    values = slots.slot_values(RECENT_FIRST, BTTF, ev, history_used=3)
    assert fill_slots(out, values).text.startswith("Back to the Future is a sci-fi comedy")


def test_delexicalise_prefers_the_longest_title():
    empire = Item(
        "Star Wars: Episode V - The Empire Strikes Back (1980)", None, {"genres": ["Sci-Fi"]}
    )
    ev = compute_evidence([empire, STAR_WARS], BTTF)
    out = delexicalise(
        "After Star Wars: Episode V - The Empire Strikes Back and Star Wars",
        [empire, STAR_WARS],
        BTTF,
        ev,
        history_used=2,
    )
    assert out == "After <s1> and <s2>"


def test_one_word_titles_only_match_with_their_capital():
    up = Item("Up (2009)", None, {"genres": ["Animation", "Comedy"]})
    toy = Item("Toy Story (1995)", None, {"genres": ["Animation", "Comedy"]})
    ev = compute_evidence([up], toy)
    out = delexicalise(
        "Kids who grew up with Up will love Toy Story.", [up], toy, ev, history_used=1
    )
    assert out == "Kids who grew up with <s1> will love <item>."


def test_decade_slots_exist_only_when_the_history_shares_the_decade():
    annie = Item("Annie Hall (1977)", None, {"genres": ["Comedy"]})
    ev = compute_evidence([annie], BTTF)
    values = slots.slot_values([annie], BTTF, ev, history_used=1)
    assert ev.decade_count == 0 and slots.DECADE not in values and values[slots.YEAR] == "1985"
    # A teacher's unfounded "1980s" stays literal text: no slot can make the claim for it.
    out = delexicalise(
        "Back to the Future is pure 1980s fun from 1985.", [annie], BTTF, ev, history_used=1
    )
    assert out == "<item> is pure 1980s fun from <year>."
