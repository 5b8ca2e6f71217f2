from explain.items import Item, display_title


def test_display_title_restores_movielens_articles_and_drops_the_year():
    assert display_title("Matrix, The (1999)") == "The Matrix"
    assert display_title("Misérables, Les (1998)") == "Les Misérables"
    assert display_title("Back to the Future (1985)") == "Back to the Future"
    assert display_title("Se7en") == "Se7en"


def test_year_comes_from_attributes_first_then_the_title():
    assert Item("Alien (1979)").year == 1979
    assert Item("Alien (1979)", attributes={"year": 1986}).year == 1986
    assert Item("Alien", attributes={"year": "1979"}).year == 1979
    assert Item("Alien").year is None


def test_features_accept_lists_and_pipe_strings_and_drop_duplicates():
    assert Item("x", attributes={"genres": ["Sci-Fi", "sci-fi", " Horror "]}).features == (
        "Sci-Fi",
        "Horror",
    )
    assert Item("x", attributes={"genres": "Comedy|Romance"}).features == ("Comedy", "Romance")
    assert Item("x", attributes={"categories": ["Pizza"]}).features == ("Pizza",)
    assert Item("x", attributes={"director": "Someone"}).features == ()


def test_one_film_is_the_same_id_or_else_the_same_shown_title_and_year():
    from explain.items import same_item

    godfather = Item("Godfather, The (1972)")
    assert same_item(godfather, Item("The Godfather (1972)"))
    assert same_item(godfather, Item("the godfather"))  # no year: cannot tell them apart
    assert not same_item(godfather, Item("The Godfather (1990)"))
    assert same_item(Item("A", "7"), Item("B", "7")) and not same_item(
        Item("A", "7"), Item("A", "8")
    )
    assert same_item(Item("Heat (1995)", "7"), Item("Heat (1995)"))  # one side without an id
    assert not same_item(Item("unknown"), Item("unknown"))


def test_distinct_recent_keeps_each_film_once_at_its_latest_watch():
    from explain.items import distinct_recent, rewatched

    a, b, c = Item("A (1990)", "1"), Item("B (1991)", "2"), Item("C (1992)", "3")
    log = [a, b, a, c, Item("A (1990)", "1")]
    assert distinct_recent(log) == [log[-1], c, b]
    assert distinct_recent(log, item=c) == [log[-1], b]
    assert distinct_recent(log, limit=2) == [log[-1], c]
    assert distinct_recent([]) == []
    assert rewatched(log, c) and not rewatched(log, Item("D (1993)", "4"))
