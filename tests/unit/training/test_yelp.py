import json
from datetime import UTC, datetime

import pytest

from training.data.yelp import load_yelp, load_yelp_dataset, parse_date


def _epoch(text):
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def _business(bid, name, categories, city="Tampa", stars=4.5):
    return json.dumps(
        {
            "business_id": bid,
            "name": name,
            "address": "1 Main St",
            "city": city,
            "state": "FL",
            "stars": stars,
            "review_count": 10,
            "is_open": 1,
            "attributes": None,
            "categories": categories,
            "hours": None,
        }
    )


def _review(rid, user, bid, stars, date):
    return json.dumps(
        {
            "review_id": rid,
            "user_id": user,
            "business_id": bid,
            "stars": stars,
            "useful": 0,
            "funny": 0,
            "cool": 0,
            "text": "Great tacos, friendly staff. Café au lait!",
            "date": date,
        }
    )


def _write(path, lines):
    path.write_bytes(
        b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines)
    )


@pytest.fixture
def yelp(tmp_path):
    _write(
        tmp_path / "yelp_academic_dataset_business.json",
        [
            _business("b1", "Taqueria Uno", "Mexican, Restaurants, Tacos"),
            _business("b2", "Café Deux", None, city=None, stars=None),
            "{not json",  # line 3
            json.dumps({"business_id": "b9", "categories": "Bars"}),  # line 4: no name
            _business("b3", "Pizza Tre", "Pizza, Restaurants"),
            _business("b1", "Taqueria Again", "Mexican"),  # line 6: duplicate id
        ],
    )
    _write(
        tmp_path / "yelp_academic_dataset_review.json",
        [
            _review("r1", "alice", "b3", 5.0, "2018-07-07 22:09:11"),
            _review("r2", "alice", "b1", 4.0, "2017-01-14 20:54:15"),
            _review("r3", "alice", "b2", 2.0, "2019-03-01 08:00:00"),
            _review("r4", "bob", "b1", 5.0, "not a date"),  # line 4
            _review("r5", "bob", "b404", 5.0, "2018-01-01 00:00:00"),  # line 5: unknown business
            b'{"review_id": "r6", "user_id": "bob\xff"}',  # line 6: not UTF-8
            "",
            _review("r7", "bob", "b3", 3.0, "2016-03-09"),  # an older dump's bare date
        ],
    )
    return tmp_path


def test_businesses_become_items_with_categories(yelp):
    items, _, _ = load_yelp(yelp)
    assert set(items) == {"b1", "b2", "b3"}
    taqueria = items["b1"]
    assert taqueria.title == "Taqueria Uno"
    assert taqueria.item_id == "b1"
    assert taqueria.attributes == {
        "categories": ["Mexican", "Restaurants", "Tacos"],
        "city": "Tampa",
        "stars": 4.5,
    }
    assert taqueria.features == ("Mexican", "Restaurants", "Tacos")
    # Null categories, city and stars: an empty feature list and no None attributes.
    assert items["b2"].attributes == {"categories": []}
    assert items["b2"].title == "Café Deux"


def test_reviews_become_interactions_in_utc_and_malformed_lines_are_recorded(yelp):
    _, interactions, skipped = load_yelp(yelp)
    assert [(i.user_id, i.item_id) for i in interactions] == [
        ("alice", "b3"),
        ("alice", "b1"),
        ("alice", "b2"),
        ("bob", "b3"),
    ]
    assert interactions[0].timestamp == _epoch("2018-07-07 22:09:11") == 1_531_001_351
    assert interactions[3].timestamp == _epoch("2016-03-09 00:00:00")
    rows = {(r.file, r.line): r.reason for r in skipped.rows}
    business, review = "yelp_academic_dataset_business.json", "yelp_academic_dataset_review.json"
    assert set(rows) == {
        (business, 3),
        (business, 4),
        (business, 6),
        (review, 4),
        (review, 5),
        (review, 6),
    }
    assert "missing name" in rows[business, 4]
    assert "unknown business_id" in rows[review, 5]
    assert "date" in rows[review, 4]
    assert "utf-8" in rows[review, 6]


def test_min_stars_and_max_reviews(yelp):
    _, liked, skipped = load_yelp(yelp, min_stars=4.0)
    assert [i.item_id for i in liked] == ["b3", "b1"]
    assert len(skipped) == 6  # filtered reviews are not malformed
    _, first, _ = load_yelp(yelp, max_reviews=2)
    assert [i.item_id for i in first] == ["b3", "b1"]


def test_short_file_names_and_dataset(tmp_path, yelp):
    short = tmp_path / "short"
    short.mkdir()
    (short / "business.json").write_bytes(
        (yelp / "yelp_academic_dataset_business.json").read_bytes()
    )
    (short / "review.json").write_bytes((yelp / "yelp_academic_dataset_review.json").read_bytes())
    ds = load_yelp_dataset(short)
    assert ds.name == "yelp"
    samples = sorted((s for split in ds.samples.values() for s in split), key=lambda s: s.timestamp)
    # alice: b1 (2017) -> b3 (2018) -> b2 (2019), chronological whatever the file order.
    assert [(s.user_id, s.item.item_id, [h.item_id for h in s.history]) for s in samples] == [
        ("alice", "b3", ["b1"]),
        ("alice", "b2", ["b1", "b3"]),
    ]
    assert len(ds.skipped) == 6
    missing = tmp_path / "missing"
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match=r"business\.json"):
        load_yelp(missing)


def test_parse_date():
    assert parse_date("1970-01-01 00:00:10") == 10
    assert parse_date("2018-07-07T22:09:11+02:00") == _epoch("2018-07-07 20:09:11")
    assert parse_date("yesterday") is None
    assert parse_date(None) is None
