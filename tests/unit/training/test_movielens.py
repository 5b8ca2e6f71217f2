import logging

import pytest

from training.data.movielens import (
    detect_format,
    load_ml1m,
    load_ml100k,
    load_ml_csv,
    load_movielens,
)

MISERABLES = "Misérables, Les (1998)"


def _write(path, lines, encoding):
    path.write_bytes(
        b"".join(
            (line.encode(encoding) if isinstance(line, str) else line) + b"\n" for line in lines
        )
    )


def _reasons(skiplog):
    return {(r.file, r.line): r.reason for r in skiplog.rows}


@pytest.fixture
def ml1m(tmp_path):
    root = tmp_path / "ml-1m"
    root.mkdir()
    _write(
        root / "movies.dat",
        [
            "1::Toy Story (1995)::Animation|Children's|Comedy",
            "2::Matrix, The (1999)::Action|Sci-Fi|Thriller",
            f"3::{MISERABLES}::Drama",
            "4::Broken row::Drama::extra",  # line 4: wrong column count
            "x5::Not an id (1990)::Drama",  # line 5: non-integer id
        ]
        + [f"{k}::Film {k} (1980)::Drama" for k in range(10, 70)],
        "latin-1",
    )
    ratings = [
        "1::2::5::978300760",
        "1::1::4::978300700",  # earlier: must come first in the sequence
        "1::3::3::978300800",
        "2::1::4::abc",  # line 4: non-integer timestamp
        "2::1::4",  # line 5: wrong column count
        "2::999::4::978300000",  # line 6: unknown movie
    ]
    ratings += [f"3::{k}::4::{1_000_000_000 + k}" for k in range(10, 70)]
    ratings += ["4::1::5::2000000000", "4::2::5::2000000001"]  # a user seen only at test time
    _write(root / "ratings.dat", ratings, "latin-1")
    return root


def test_ml1m_items_keep_titles_and_parse_genres_and_year(ml1m):
    items, interactions, _ = load_ml1m(ml1m)
    assert items["3"].title == MISERABLES
    assert items["3"].display_title == "Les Misérables"
    matrix = items["2"]
    assert matrix.title == "Matrix, The (1999)"
    assert matrix.attributes["genres"] == ["Action", "Sci-Fi", "Thriller"]
    assert matrix.attributes["year"] == 1999
    assert items["1"].features == ("Animation", "Children's", "Comedy")
    assert "4" not in items and "5" not in items
    assert len(interactions) == 3 + 60 + 2
    assert interactions[0].user_id == "1" and interactions[0].item_id == "2"
    assert interactions[0].timestamp == 978300760


def test_ml1m_malformed_rows_are_recorded_with_file_and_line(ml1m, caplog):
    with caplog.at_level(logging.WARNING, logger="training.data.movielens"):
        _, _, skipped = load_ml1m(ml1m)
    reasons = _reasons(skipped)
    assert set(reasons) == {
        ("movies.dat", 4),
        ("movies.dat", 5),
        ("ratings.dat", 4),
        ("ratings.dat", 5),
        ("ratings.dat", 6),
    }
    assert "3 fields" in reasons["movies.dat", 4]
    assert "unknown movie id 999" in reasons["ratings.dat", 6]
    assert "5 malformed rows skipped" in caplog.text


def test_ml1m_dataset_is_chronological_and_cut_to_fifty(ml1m):
    ds = load_movielens(ml1m)
    assert ds.name == "ml-1m"
    samples = [s for split in ("train", "valid", "test") for s in ds.samples[split]]
    user1 = sorted((s for s in samples if s.user_id == "1"), key=lambda s: s.timestamp)
    assert [[h.item_id for h in s.history] for s in user1] == [["1"], ["1", "2"]]
    assert [s.item.item_id for s in user1] == ["2", "3"]
    user3 = [s for s in samples if s.user_id == "3"]
    longest = max(user3, key=lambda s: s.timestamp)
    assert longest.item.item_id == "69"
    assert [h.item_id for h in longest.history] == [str(k) for k in range(19, 69)]
    assert len(ds.skipped) == 5


def test_ml1m_time_split_and_train_only_user_index(ml1m):
    ds = load_movielens(ml1m)
    train, test = ds.samples["train"], ds.samples["test"]
    assert max(s.timestamp for s in train) < min(s.timestamp for s in test)
    # User 1 rated three films in December 2000, user 3 sixty from September 2001 on, and
    # user 4 two in 2033: user 4 is only in test, so not in the index.
    assert set(ds.user_index) == {s.user_id for s in train} == {"1", "3"}
    assert "4" in {s.user_id for s in test}
    assert "4" not in ds.user_index
    assert list(ds.user_index.values()) == list(range(1, len(ds.user_index) + 1))


@pytest.fixture
def ml100k(tmp_path):
    root = tmp_path / "ml-100k"
    root.mkdir()

    def row(movie_id, title, date, flags):
        bits = ["0"] * 19
        for k in flags:
            bits[k] = "1"
        return f"{movie_id}|{title}|{date}||http://us.imdb.com/M/title-exact?x|" + "|".join(bits)

    _write(
        root / "u.item",
        [
            row(1, "Toy Story (1995)", "01-Jan-1995", [3, 4, 5]),
            row(2, MISERABLES, "01-Jan-1998", [8]),
            row(3, "unknown", "", [0]),
            row(4, "Heat", "15-Dec-1995", [1, 6, 16]),  # no year in the title
            "5|Too|few|columns",  # line 5
            row(6, "Bad flags (1990)", "01-Jan-1990", [1]).replace("|1|", "|2|"),  # line 6
        ],
        "latin-1",
    )
    _write(
        root / "u.data",
        [
            "196\t1\t3\t881250949",
            "196\t2\t4\t881250950",
            "196\t4\t5\t881250000",
            "7\t1\t3",
            "x\t1\t3\t5",
        ],
        "latin-1",
    )
    return root


def test_ml100k_genre_flags_years_and_latin1(ml100k):
    items, interactions, skipped = load_ml100k(ml100k)
    assert items["1"].attributes == {"genres": ["Animation", "Children's", "Comedy"], "year": 1995}
    assert items["2"].title == MISERABLES and items["2"].features == ("Drama",)
    assert items["3"].attributes == {"genres": []}  # "unknown" is no genre, and no year
    assert items["4"].attributes["year"] == 1995  # from the release date
    assert items["4"].features == ("Action", "Crime", "Thriller")
    assert set(items) == {"1", "2", "3", "4"}
    assert set(_reasons(skipped)) == {("u.item", 5), ("u.item", 6), ("u.data", 4), ("u.data", 5)}
    assert [(i.user_id, i.item_id) for i in interactions] == [
        ("196", "1"),
        ("196", "2"),
        ("196", "4"),
    ]


def test_ml100k_sequence_order(ml100k):
    ds = load_movielens(ml100k)
    assert ds.name == "ml-100k"
    samples = sorted((s for split in ds.samples.values() for s in split), key=lambda s: s.timestamp)
    # 4 (t=...000) then 1 (t=...949) then 2 (t=...950).
    assert [(s.item.item_id, [h.item_id for h in s.history]) for s in samples] == [
        ("1", ["4"]),
        ("2", ["4", "1"]),
    ]


@pytest.fixture
def mlcsv(tmp_path):
    root = tmp_path / "ml-latest-small"
    root.mkdir()
    movies = [
        "movieId,title,genres",
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
        '11,"American President, The (1995)",Comedy|Drama|Romance',
        "4973,Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001),Comedy|Romance",  # line 4: 4 fields
        '4974,"Amélie, Le (2001)",Comedy|Romance',
        "200000,Nothing Listed (2019),(no genres listed)",
        b"7,Bad \xff bytes (2000),Drama",  # line 7
        '8,"Unclosed quote (2000),Drama',  # line 8
    ]
    _write(root / "movies.csv", movies, "utf-8")
    ratings = [
        "userId,movieId,rating,timestamp",
        "1,11,4.0,964982703",
        "1,1,4.0,964981247",
        "1,4974,3.5,964983000",
        "1,200000,x,964983100",  # line 5: non-numeric rating
        "2,7,4.0,964983100",  # line 6: unknown movie (its row was malformed)
    ]
    _write(root / "ratings.csv", ratings, "utf-8")
    return root


def test_ml_csv_quoting_utf8_and_no_genres(mlcsv):
    items, interactions, skipped = load_ml_csv(mlcsv)
    assert items["11"].title == "American President, The (1995)"
    assert items["11"].display_title == "The American President"
    assert items["4974"].title == "Amélie, Le (2001)"
    assert items["200000"].attributes == {"genres": [], "year": 2019}
    assert items["1"].features[2] == "Children"
    assert set(_reasons(skipped)) == {
        ("movies.csv", 4),
        ("movies.csv", 7),
        ("movies.csv", 8),
        ("ratings.csv", 5),
        ("ratings.csv", 6),
    }
    assert "undecodable" in _reasons(skipped)["movies.csv", 7]
    assert len(interactions) == 3


def test_ml_csv_dataset_name_and_order(mlcsv):
    ds = load_movielens(mlcsv)
    assert ds.name == "ml-latest-small"
    samples = sorted((s for split in ds.samples.values() for s in split), key=lambda s: s.timestamp)
    assert [s.item.item_id for s in samples] == ["11", "4974"]
    assert [h.item_id for h in samples[-1].history] == ["1", "11"]


def test_format_detection_and_missing_files(ml1m, ml100k, mlcsv, tmp_path):
    assert detect_format(ml1m) == "ml-1m"
    assert detect_format(ml100k) == "ml-100k"
    assert detect_format(mlcsv) == "ml-csv"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat"):
        load_movielens(empty)
