"""The independent grammar checker, on the failures seen on real catalogues."""

import pytest

from training.grammar import is_grammatical, names_of, problems

BAD = [
    ("Raiders of the Lost Ark offers the The Princess Bride and Die Hard your The Princess "
     "Bride and Die Hard keep choosing.", ["Raiders of the Lost Ark", "The Princess Bride",
                                           "Die Hard"], "double_article"),
    ("Taxi Driver, released in 1976, belongs to the 1976, belongs to the Taxi Driver.",
     ["Taxi Driver"], "repeated_phrase"),
    ("The Candidate, a The Candidate is a fresh pick that could widen your taste.",
     ["The Candidate"], "double_article"),
    ("Return of Martin Guerre, The (Retour de Martin Guerre, Le) offers the drama you love.",
     [names_of("Return of Martin Guerre, The (Retour de Martin Guerre, Le) (1982)")],
     "inverted_title"),
    ("Heat is a a crime film.", ["Heat"], "double_article"),
    ("Heat is a action film.", ["Heat"], "article_agreement"),
    ("Heat is from the.", ["Heat"], "dangling_word"),
    ("heat is a crime film.", [], "capitalisation"),
    ("Heat is a <g1> film.", ["Heat"], "placeholder"),
    ("Heat is a crime film", ["Heat"], "punctuation"),
    ("Heat is is a crime film.", ["Heat"], "repeated_word"),
    ("Heat is a 1990s.", ["Heat"], "article_before_plural_decade"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "names", "reason"), BAD)
def test_each_failure_is_named(text, names, reason):
    assert reason in problems(text, names)


GOOD = [
    ("E.T. the Extra-Terrestrial is a sci-fi film, like Mars Attacks!",
     ["E.T. the Extra-Terrestrial", "Mars Attacks!"]),
    ("Like Alien, The Thing is a horror film, and the 1980s suit you.", ["Alien", "The Thing"]),
    ("If you enjoyed The Good, the Bad and the Ugly, Unforgiven is a natural next watch.",
     ["The Good, the Bad and the Ugly", "Unforgiven"]),
    ("Birdman: Or (The Unexpected Virtue of Ignorance) is an adventure worth a look.",
     ["Birdman: Or (The Unexpected Virtue of Ignorance)"]),
    ("Your love of '80s cinema makes Heat an easy recommendation.", ["Heat"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "names"), GOOD)
def test_well_formed_sentences_pass(text, names):
    assert is_grammatical(text, names), problems(text, names)


def test_names_are_derived_by_the_checkers_own_rules():
    assert names_of("Godfather, The (1972)") == "The Godfather"
    assert names_of("Seven Samurai (Shichinin no samurai) (1954)") == "Seven Samurai"
    assert names_of("Atalante, L' (1934)") == "L'Atalante"
    # A title left inverted is not its name: the checker sees it.
    assert "inverted_title" in problems("Godfather, The is next.", [names_of("Godfather, The")])
