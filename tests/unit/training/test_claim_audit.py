"""Auditing served text for false claims (the figures of the messy-requests suite)."""

from explain.items import Item
from training.claim_audit import audit

HORROR = [Item(f"Horror {k} (19{60 + 2 * k})", None, {"genres": ["Horror"]}) for k in range(9)]
EIGHTIES = Item("Old Comedy (1983)", None, {"genres": ["Comedy"]})
NIGHTMARE = Item("A Nightmare on Elm Street (1984)", None, {"genres": ["Horror"]})
BEAN = Item("Bean (1997)", None, {"genres": ["Comedy"]})
SUMMER = Item("I Know What You Did Last Summer (1997)", None, {"genres": ["Horror"]})


def findings(text, history, item):
    return [(f.claim, f.false) for f in audit(text, history, item)]


def test_an_era_claim_for_one_film_in_ten_is_false():
    text = "A Nightmare on Elm Street is an '80s film, and the 1980s clearly suit your taste."
    assert findings(text, [*HORROR, EIGHTIES], NIGHTMARE) == [("era", True)]  # one claim
    eighties = [Item(f"E{k} (198{k})", None, {}) for k in range(4)]
    assert findings("It comes from the 1980s, like films you picked.", eighties, NIGHTMARE) == [
        ("era", False)
    ]


def test_similarity_without_a_shared_genre_is_false():
    assert findings("Bean sits right next to I Know What You Did Last Summer in spirit.",
                    [SUMMER], BEAN) == [("similar_title", True)]  # fmt: skip
    funny = Item("Airplane! (1980)", None, {"genres": ["Comedy"]})
    assert findings("If you enjoyed Airplane!, Bean is a natural next watch.", [funny], BEAN) == [
        ("similar_title", False)
    ]


def test_novelty_when_the_history_shares_the_genre_is_false():
    shawshank = Item("The Shawshank Redemption (1994)", None, {"genres": ["Drama"]})
    cuckoo = Item("One Flew Over the Cuckoo's Nest (1975)", None, {"genres": ["Drama"]})
    text = "The Shawshank Redemption is a fresh pick that could widen your taste."
    assert findings(text, [cuckoo], shawshank) == [("novelty", True)]
    assert findings(text, [BEAN], shawshank) == [("novelty", False)]


def test_genre_taste_claims_follow_the_rules():
    text = "You clearly love horror, so A Nightmare on Elm Street is worth a look."
    assert findings(text, HORROR, NIGHTMARE) == [("shared_genre", False)]
    two_of_nine = [*HORROR[:2], *[Item(f"C{k}", None, {"genres": ["Comedy"]}) for k in range(7)]]
    assert findings(text, two_of_nine, NIGHTMARE) == [("shared_genre", True)]


def test_titles_are_not_read_as_claims():
    summer = Item("Summer of '42 (1971)", None, {"genres": ["Drama"]})
    odyssey = Item("2001: A Space Odyssey (1968)", None, {"genres": ["Sci-Fi"]})
    assert findings("Summer of '42 has much in common with 2001: A Space Odyssey.",
                    [odyssey], summer) == [("similar_title", True)]  # fmt: skip


def test_like_in_an_era_sentence_compares_the_era():
    heat = Item("Heat (1995)", None, {"genres": ["Crime"]})
    truman = Item("The Truman Show (1998)", None, {"genres": ["Comedy"]})
    rushmore = Item("Rushmore (1998)", None, {"genres": ["Comedy"]})
    text = "Heat is from the 1990s, like The Truman Show and Rushmore."
    assert findings(text, [truman, rushmore], heat) == [("era", False)]


def test_a_title_inside_the_items_title_is_not_a_mention():
    big_heat = Item("The Big Heat (1953)", None, {"genres": ["Crime", "Film-Noir"]})
    big = Item("Big (1988)", None, {"genres": ["Comedy"]})
    gilda = Item("Gilda (1946)", None, {"genres": ["Film-Noir"]})
    text = "The Big Heat is very much in the same vein as Gilda."
    assert findings(text, [big, gilda], big_heat) == [("similar_title", False)]


def test_several_films_need_two_distinct_films_besides_the_item():
    text = "Bean was picked for you with Airplane! and your other recent watches in mind."
    funny = Item("Airplane! (1980)", None, {"genres": ["Comedy"]})
    assert findings(text, [funny], BEAN) == [("several_films", True)]
    assert findings(text, [funny, funny, BEAN], BEAN) == [("several_films", True)]  # repeats
    assert findings(text, [funny, SUMMER], BEAN) == [("several_films", False)]
    one = "Since you recently watched Airplane!, Bean is up next for you."
    assert findings(one, [funny], BEAN) == []
