from explain.items import Item
from explain.titles import display_title
from training.data.catalog import alternate_titles, load_catalog
from training.data.title_formats import ORIGINAL, as_catalogue, bare, catalogue_title, sort_form


def test_sort_form_moves_a_leading_article_to_the_end():
    assert sort_form("The Thing") == "Thing, The"
    assert sort_form("A Fish Called Wanda") == "Fish Called Wanda, A"
    assert sort_form("Les Misérables", ORIGINAL) == "Misérables, Les"
    assert sort_form("Heat") == "Heat" and sort_form("The") == "The"
    # An English title that starts with a foreign article's spelling stays as it is.
    assert sort_form("Die Hard") == "Die Hard" and sort_form("O Brother, Where Art Thou?") == (
        "O Brother, Where Art Thou?"
    )
    assert sort_form("I Am Legend", ORIGINAL) == "I Am Legend"


def test_catalogue_titles_carry_the_alternate_title_and_the_year():
    samurai = Item("Seven Samurai (1954)", "s", {"genres": ["Drama"]})
    assert catalogue_title(samurai, "Shichinin no samurai") == (
        "Seven Samurai (Shichinin no samurai) (1954)"
    )
    illusion = Item("The Grand Illusion (1937)", "g", {})
    assert catalogue_title(illusion, "La Grande illusion") == (
        "Grand Illusion, The (Grande illusion, La) (1937)"
    )
    written = as_catalogue(samurai, {"s": "Shichinin no samurai"})
    assert written.attributes == samurai.attributes and written.item_id == "s"
    assert bare(written).attributes == {} and bare(written).title == written.title


def test_every_catalogue_film_reads_back_to_its_display_title():
    catalogue, alternates = load_catalog(), alternate_titles()
    assert len(alternates) >= 10
    for item_id, item in catalogue.items():
        written = catalogue_title(item, alternates.get(item_id))
        assert display_title(written) == item.display_title, (written, item.title)
