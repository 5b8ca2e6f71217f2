import pytest

from explain.items import Item
from training.data.sequences import build_dataset, dataset_stats, time_cut_points
from training.data.types import Interaction, SkipLog

ITEMS = {
    str(k): Item(f"Film {k} (19{80 + k % 20})", str(k), {"genres": ["Drama"]}) for k in range(1, 80)
}


def _ids(items):
    return [i.item_id for i in items]


def test_history_is_chronological_with_stable_ties_and_one_sample_per_position():
    interactions = [
        Interaction("u1", "3", 30),
        Interaction("u1", "1", 10),
        Interaction("u1", "4", 20),  # ties with "2" at t=20: input order decides
        Interaction("u1", "2", 20),
    ]
    ds = build_dataset("t", ITEMS, interactions, valid_fraction=0.0, test_fraction=0.0)
    samples = ds.samples["train"]
    assert [(s.item.item_id, _ids(s.history), s.timestamp) for s in samples] == [
        ("4", ["1"], 20),
        ("2", ["1", "4"], 20),
        ("3", ["1", "4", "2"], 30),
    ]


def test_history_keeps_only_the_most_recent_max_history_items():
    interactions = [Interaction("u", str(k), k) for k in range(1, 61)]
    ds = build_dataset("t", ITEMS, interactions, valid_fraction=0.0, test_fraction=0.0)
    samples = ds.samples["train"]
    assert len(samples) == 59
    last = samples[-1]
    assert last.item.item_id == "60"
    assert len(last.history) == 50
    assert _ids(last.history) == [str(k) for k in range(10, 60)]
    assert max(len(s.history) for s in samples) == 50
    short = build_dataset(
        "t", ITEMS, interactions, max_history=5, valid_fraction=0, test_fraction=0
    )
    assert _ids(short.samples["train"][-1].history) == ["55", "56", "57", "58", "59"]


def test_min_history_skips_the_first_positions():
    interactions = [Interaction("u", str(k), k) for k in range(1, 6)]
    ds = build_dataset("t", ITEMS, interactions, min_history=3, valid_fraction=0, test_fraction=0)
    assert [s.item.item_id for s in ds.samples["train"]] == ["4", "5"]
    assert all(len(s.history) >= 3 for s in ds.samples["train"])


def test_unknown_items_are_dropped_and_recorded():
    skipped = SkipLog()
    skipped.skip("ratings.dat", 7, "an earlier loader row")
    interactions = [
        Interaction("u", "1", 1),
        Interaction("u", "nope", 2),
        Interaction("u", "2", 3),
    ]
    ds = build_dataset("t", ITEMS, interactions, skipped=skipped, valid_fraction=0, test_fraction=0)
    assert ds.skipped is skipped
    assert len(ds.skipped) == 2
    row = ds.skipped.rows[1]
    assert (row.file, row.line) == ("interactions", 2)
    assert "nope" in row.reason
    # The unknown item is gone from the sequence, not just from the samples.
    assert [_ids(s.history) for s in ds.samples["train"]] == [["1"]]


def _timeline(users=20, per_user=11):
    """Users whose interactions interleave in time; the last user starts late."""
    interactions = []
    for u in range(users):
        for k in range(per_user):
            interactions.append(Interaction(f"user{u:02d}", str(1 + (u + k) % 79), 1000 * k + u))
    interactions += [Interaction("late", "1", 10**6), Interaction("late", "2", 10**6 + 1)]
    return interactions


def test_time_split_is_ordered_and_near_the_requested_fractions():
    ds = build_dataset("t", ITEMS, _timeline())
    train, valid, test = (ds.samples[s] for s in ("train", "valid", "test"))
    assert train and valid and test
    assert max(s.timestamp for s in train) < min(s.timestamp for s in valid)
    assert max(s.timestamp for s in valid) < min(s.timestamp for s in test)
    total = len(train) + len(valid) + len(test)
    assert total == 20 * 10 + 1
    assert abs(len(test) / total - 0.1) < 0.02
    assert abs(len(valid) / total - 0.1) < 0.02


def test_user_index_comes_from_train_users_only_in_sorted_order():
    ds = build_dataset("t", ITEMS, _timeline())
    test_users = {s.user_id for s in ds.samples["test"]}
    assert "late" in test_users
    assert "late" not in ds.user_index
    train_users = sorted({s.user_id for s in ds.samples["train"]})
    assert list(ds.user_index) == train_users
    assert list(ds.user_index.values()) == list(range(1, len(train_users) + 1))
    stats = dataset_stats(ds)
    assert stats["unknown_test_users"] == 1
    assert stats["unknown_test_samples"] == 1
    assert stats["train_users"] == 20
    assert stats["users"] == 21
    assert stats["train_samples"] + stats["valid_samples"] + stats["test_samples"] == 201
    assert stats["items"] == len(ITEMS)


def test_ties_at_a_cut_point_go_to_the_earlier_split():
    # 10 samples; the 8th and 9th share timestamp 8, the train cut (8 samples) falls between.
    stamps = [1, 2, 3, 4, 5, 6, 7, 8, 8, 10]
    train_end, valid_end = time_cut_points(stamps, 0.1, 0.1)
    assert (train_end, valid_end) == (8, 8)
    interactions = [Interaction(f"u{k}", "1", 0) for k in range(10)]
    interactions += [Interaction(f"u{k}", "2", t) for k, t in enumerate(stamps)]
    ds = build_dataset("t", ITEMS, interactions)
    assert [s.timestamp for s in ds.samples["train"]] == [1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert ds.samples["valid"] == []
    assert [s.timestamp for s in ds.samples["test"]] == [10]


def test_mean_history_and_empty_dataset_stats():
    interactions = [Interaction("u", str(k), k) for k in range(1, 5)]  # histories 1, 2, 3
    ds = build_dataset("t", ITEMS, interactions, valid_fraction=0, test_fraction=0)
    assert dataset_stats(ds)["mean_history"] == 2.0
    empty = build_dataset("e", ITEMS, [])
    assert dataset_stats(empty)["mean_history"] == 0.0
    assert empty.user_index == {}


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="fraction"):
        build_dataset("t", ITEMS, [], valid_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="max_history"):
        build_dataset("t", ITEMS, [], max_history=0)
