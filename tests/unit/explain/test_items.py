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
