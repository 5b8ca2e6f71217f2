from explain.items import Item
from training.aspects import aspect_of, aspects_used
from training.faithfulness import TitleMatcher

CATALOGUE = [
    Item("Alien (1979)"),
    Item("Heat (1995)"),
    Item("Star Wars (1977)"),
    Item("Star Wars: Episode V - The Empire Strikes Back (1980)"),
    Item("Wizard of Oz, The (1939)"),
]


def test_mentions_find_titles_by_their_display_form_longest_first():
    matcher = TitleMatcher(CATALOGUE)
    text = "Like The Wizard of Oz and star wars: episode v - the empire strikes back, not an alien."
    assert matcher.mentions(text) == {
        "The Wizard of Oz",
        "Star Wars: Episode V - The Empire Strikes Back",
    }
    assert matcher.mentions("Alien is scary, and heat is high") == {"Alien"}


def test_hallucinated_titles_are_those_outside_the_request():
    matcher = TitleMatcher(CATALOGUE)
    text = "Based on The Wizard of Oz and Star Wars."
    assert matcher.hallucinated(text, [Item("Star Wars (1977)")]) == {"The Wizard of Oz"}
    assert (
        matcher.hallucinated(
            "Loved Star Wars", [Item("Star Wars: Episode V - The Empire Strikes Back (1980)")]
        )
        == set()
    )


def test_aspect_is_the_first_evidence_slot():
    assert aspect_of("<item> is a <g1> film like <s1>") == "genre"
    assert aspect_of("From the <dec>, <item> ...") == "era"
    assert aspect_of("<item> is like <h3>") == "similar"
    assert aspect_of("<item> is great") is None
    assert aspects_used("<item> <g1> <decs> <s2>") == {"genre", "era", "similar"}
