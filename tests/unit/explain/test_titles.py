import pytest

from explain.items import Item
from explain.titles import display_title, has_inverted_article, nameable

CATALOGUE_TITLES = [
    ("Shawshank Redemption, The (1994)", "The Shawshank Redemption"),
    ("Return of Martin Guerre, The (Retour de Martin Guerre, Le) (1982)",
     "The Return of Martin Guerre"),
    ("Seven Samurai (Shichinin no samurai) (1954)", "Seven Samurai"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
     "The City of Lost Children"),
    ("Misérables, Les (1998)", "Les Misérables"),
    ("Atalante, L' (1934)", "L'Atalante"),
    ("Postino, Il (1994)", "Il Postino"),
    ("Blechtrommel, Die (1979)", "Die Blechtrommel"),
    ("Espinazo del diablo, El (2001)", "El Espinazo del diablo"),
    ("Seven (a.k.a. Se7en) (1995)", "Seven"),
    ("Léon: The Professional (a.k.a. The Professional) (Léon) (1994)", "Léon: The Professional"),
    ("Lord of the Rings: The Two Towers, The (2002)", "The Lord of the Rings: The Two Towers"),
    ("Good, the Bad and the Ugly, The (1966)", "The Good, the Bad and the Ugly"),
    ("Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)", "Crouching Tiger, Hidden Dragon"),
    ("Birdman: Or (The Unexpected Virtue of Ignorance) (2014)",
     "Birdman: Or (The Unexpected Virtue of Ignorance)"),
    ("2001: A Space Odyssey (1968)", "2001: A Space Odyssey"),
    ("  Heat   (1995) ", "Heat"),
    ("Heat", "Heat"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "shown"), CATALOGUE_TITLES)
def test_catalogue_titles_are_shown_as_a_sentence_writes_them(raw, shown):
    assert display_title(raw) == shown
    assert Item(raw, None, {}).display_title == shown


def test_placeholders_cannot_be_named():
    for raw in ("unknown", "(no title)", "Untitled", "-", "  "):
        assert not nameable(raw)
    assert nameable("M (1931)") and nameable("Heat")


def test_an_inverted_title_in_running_text_is_found():
    assert has_inverted_article("Shawshank Redemption, The offers a lot.")
    assert has_inverted_article("You liked Thing, The.")
    assert has_inverted_article("Return of Martin Guerre, The (Retour) is next.")
    assert has_inverted_article("Misérables, Les is here")
    # Commas before a lower-case article, or before a title, are ordinary prose.
    assert not has_inverted_article("The Thing, a film you liked.")
    assert not has_inverted_article("The Good, the Bad and the Ugly is great.")
    assert not has_inverted_article("Like Alien, The Thing is a horror film.")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("He\x00at (1995)", "He at"),
        ("Heat\x00", "Heat"),
        ("Ali\x1b[31men (1979)", "Ali [31men"),
        ("Heat\u200b \u2028(1995)", "Heat"),
        ("\u202eHeat\u202c", "Heat"),
        ("Jaws\n(1975)", "Jaws"),
        ("Am\u00e9lie\u00ad", "Am\u00e9lie"),
    ],
)
def test_control_and_invisible_characters_never_reach_a_sentence(raw, shown):
    assert display_title(raw) == shown


def test_a_title_with_nothing_visible_cannot_be_named():
    assert display_title("\u200b\x00") == "" and not nameable("\u200b\x00")
    assert Item("Film", None, {"genres": ["Dra\x00ma", "\u200bCrime"]}).features == (
        "Dra ma",
        "Crime",
    )
