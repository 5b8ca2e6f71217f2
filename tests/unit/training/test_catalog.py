import json
from importlib import resources

import pytest

from training.data.catalog import GENRES, CatalogError, catalog_stats, load_catalog, validate_films

CASE_STUDY = {
    # The paper's Table 5 films, with their ids pinned: ids must never be renumbered.
    "f268": "E.T. the Extra-Terrestrial (1982)",
    "f227": "Star Wars (1977)",
    "f269": "The Thing (1982)",
    "f307": "Back to the Future (1985)",
    "f235": "Animal House (1978)",
    "f249": "Caddyshack (1980)",
    "f459": "American Pie (1999)",
    "f320": "Ferris Bueller's Day Off (1986)",
    "f294": "Sixteen Candles (1984)",
    "f021": "The Wizard of Oz (1939)",
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_size_decades_and_genres_cover_the_claims(catalog):
    stats = catalog_stats(catalog)
    assert len(catalog) >= 320
    decades = stats["decades"]
    assert set(decades) == {f"{d}s" for d in range(1930, 2020, 10)}
    assert decades["1930s"] >= 15 and decades["1940s"] >= 15
    assert all(decades[f"{d}s"] >= 25 for d in range(1950, 2020, 10)), decades
    assert set(stats["genres"]) == set(GENRES)
    assert min(stats["genres"].values()) >= 10, stats["genres"]


def test_case_study_films_and_80s_sci_fi(catalog):
    for item_id, title in CASE_STUDY.items():
        assert catalog[item_id].title == title
    back = catalog["f307"]
    assert back.year == 1985 and {"Comedy", "Sci-Fi"} <= set(back.features)
    assert catalog["f269"].display_title == "The Thing"
    eighties_sci_fi = [
        i for i in catalog.values() if 1980 <= i.year < 1990 and "Sci-Fi" in i.features
    ]
    assert len(eighties_sci_fi) >= 20


def test_ids_titles_and_items_are_well_formed(catalog):
    assert list(catalog) == [f"f{k:03d}" for k in range(1, len(catalog) + 1)]
    titles = [i.title for i in catalog.values()]
    assert len(set(titles)) == len(titles)
    for key, item in catalog.items():
        assert item.item_id == key
        assert item.title.endswith(f" ({item.attributes['year']})")
        assert item.year == item.attributes["year"]
        assert item.features and set(item.features) <= set(GENRES)
        # Natural article order: no MovieLens-style "Thing, The".
        assert not item.title.split(" (")[0].endswith((", The", ", A", ", An"))


def test_load_returns_a_fresh_dict_each_call(catalog):
    mine = load_catalog()
    mine.pop("f001")
    assert "f001" in load_catalog()


def test_package_data_is_the_json_file():
    text = resources.files("training.data").joinpath("films.json").read_text(encoding="utf-8")
    assert len(json.loads(text)["films"]) == len(load_catalog())


GOOD = {"id": "f001", "title": "Alien (1979)", "year": 1979, "genres": ["Horror", "Sci-Fi"]}


@pytest.mark.parametrize(
    ("films", "message"),
    [
        ([GOOD, {**GOOD, "title": "Aliens (1986)", "year": 1986}], "duplicate id"),
        ([GOOD, {**GOOD, "id": "f002"}], "repeats f001"),
        ([GOOD, {**GOOD, "id": "f002", "title": "Alien (1980)", "year": 1980}], "repeats f001"),
        ([{**GOOD, "genres": ["Space Opera"]}], "bad genres"),
        ([{**GOOD, "genres": []}], "non-empty"),
        ([{**GOOD, "year": 1850, "title": "Alien (1850)"}], "implausible year"),
        ([{**GOOD, "title": "Alien"}], "must end in"),
        ([{**GOOD, "id": "x1"}], "not like"),
        (["f001"], "not an object"),
    ],
)
def test_validation_rejects_bad_entries(films, message):
    with pytest.raises(CatalogError, match=message):
        validate_films(films)


def test_validation_accepts_a_good_entry():
    (item,) = validate_films([GOOD])
    assert item.item_id == "f001" and item.features == ("Horror", "Sci-Fi") and item.year == 1979
