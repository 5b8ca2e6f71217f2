"""From raw interactions to `(u, H_u, i_rec)` samples: chronological sequences, split by time.

Every loader (MovieLens, Yelp, the synthetic users) ends here, so the preprocessing of the
paper (section 5.2: chronological sequences, the most recent 50 items) is written once.

The split is global in time, not per user: one pair of timestamp cut points divides all
samples, so no test sample is earlier than a train sample and nothing from the future
leaks into training. A user whose first sample lies after the train cut is unknown to the
model, which is exactly the cold-start case the zero user vector serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean
from typing import TypedDict

from explain.items import Item
from training.data.types import SPLITS, Dataset, Interaction, Sample, SkipLog, UserProfile

logger = logging.getLogger(__name__)

# What `build_dataset` writes in the SkipLog for interactions it drops: they are no file
# rows, so the "line" is the 1-based position in the interaction stream.
INTERACTIONS_SOURCE = "interactions"


def user_sequences(
    items: Mapping[str, Item], interactions: Iterable[Interaction], skipped: SkipLog
) -> dict[str, list[Interaction]]:
    """Each user's known-item interactions, oldest first; equal timestamps keep input order.

    Interactions whose item is not in `items` are dropped and recorded in `skipped`.
    Users come out in order of first appearance, so everything downstream is deterministic.
    """
    by_user: dict[str, list[Interaction]] = {}
    unknown = 0
    for position, interaction in enumerate(interactions, start=1):
        if interaction.item_id not in items:
            skipped.skip(INTERACTIONS_SOURCE, position, f"unknown item id {interaction.item_id!r}")
            unknown += 1
            continue
        by_user.setdefault(interaction.user_id, []).append(interaction)
    if unknown:
        logger.warning("dropped %d interactions with an unknown item id", unknown)
    for sequence in by_user.values():
        sequence.sort(key=lambda i: i.timestamp)  # list.sort is stable: ties keep input order
    return by_user


def make_samples(
    items: Mapping[str, Item],
    sequence: Sequence[Interaction],
    *,
    max_history: int = 50,
    min_history: int = 1,
) -> list[Sample]:
    """One sample per position `t >= min_history` of one user's chronological sequence."""
    resolved = [items[i.item_id] for i in sequence]
    samples = []
    for t in range(min_history, len(sequence)):
        history = tuple(resolved[max(0, t - max_history) : t])
        current = sequence[t]
        samples.append(Sample(current.user_id, history, resolved[t], current.timestamp))
    return samples


def time_cut_points(
    timestamps: Sequence[int], valid_fraction: float, test_fraction: float
) -> tuple[float, float]:
    """The last train timestamp and the last valid timestamp (`-inf` when a split is empty).

    A sample goes to train when `timestamp <= train_end`, to valid when
    `train_end < timestamp <= valid_end`, and to test otherwise. The cut points are the
    timestamps at the (1 - valid - test) and (1 - test) quantiles (nearest rank), and
    samples that *tie* with a cut point go to the earlier split: a tie is never broken by
    input order, so the splits stay strictly ordered in time, at the price of the earlier
    split being slightly larger than its fraction when many samples share the cut second.
    """
    ordered = sorted(timestamps)
    n = len(ordered)

    def last_of(fraction: float) -> float:
        count = round(n * fraction)
        return float(ordered[count - 1]) if count > 0 else float("-inf")

    train_end = last_of(1.0 - valid_fraction - test_fraction)
    valid_end = max(train_end, last_of(1.0 - test_fraction))
    return train_end, valid_end


def build_dataset(
    name: str,
    items: dict[str, Item],
    interactions: Iterable[Interaction],
    *,
    max_history: int = 50,
    min_history: int = 1,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skipped: SkipLog | None = None,
    profiles: dict[str, UserProfile] | None = None,
) -> Dataset:
    """Chronological samples split by global time, and the user index of the train users.

    `history` is the previous `max_history` items at most (oldest first). The user index
    maps the users that have a train sample, in sorted id order, to rows 1..N (row 0 is the
    unknown user). `skipped` collects dropped interactions (and usually arrives holding the
    loader's malformed rows); see `time_cut_points` for how ties at a cut are handled.
    Within a split, samples are grouped by user (in order of first appearance) and are
    chronological within each user.
    """
    if max_history < 1 or min_history < 0:
        raise ValueError(
            f"need max_history >= 1 and min_history >= 0, got {max_history}, {min_history}"
        )
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise ValueError(
            f"need 0 <= valid_fraction, test_fraction and a sum below 1, got "
            f"{valid_fraction} + {test_fraction}"
        )
    skiplog = skipped if skipped is not None else SkipLog()
    samples: list[Sample] = []
    for sequence in user_sequences(items, interactions, skiplog).values():
        samples.extend(
            make_samples(items, sequence, max_history=max_history, min_history=min_history)
        )

    train_end, valid_end = time_cut_points(
        [s.timestamp for s in samples], valid_fraction, test_fraction
    )
    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for sample in samples:
        if sample.timestamp <= train_end:
            splits["train"].append(sample)
        elif sample.timestamp <= valid_end:
            splits["valid"].append(sample)
        else:
            splits["test"].append(sample)

    train_users = sorted({s.user_id for s in splits["train"]})
    user_index = {user: row for row, user in enumerate(train_users, start=1)}
    return Dataset(name, items, splits, user_index, skiplog, dict(profiles or {}))


class DatasetStats(TypedDict):
    name: str
    users: int  # users with at least one sample, in any split
    train_users: int  # the user index: users with a train sample
    items: int  # the catalogue
    items_in_samples: int
    train_samples: int
    valid_samples: int
    test_samples: int
    mean_history: float  # over all samples
    unknown_test_users: int  # test users outside the user index (they get the zero vector)
    unknown_test_samples: int
    skipped_rows: int


def dataset_stats(ds: Dataset) -> DatasetStats:
    """Flat, JSON-ready statistics for reports (the paper's Table 1 and a little more)."""
    all_samples = [s for split in SPLITS for s in ds.samples.get(split, [])]
    test = ds.samples.get("test", [])
    unknown_test = [s for s in test if s.user_id not in ds.user_index]
    return DatasetStats(
        name=ds.name,
        users=len({s.user_id for s in all_samples}),
        train_users=len(ds.user_index),
        items=len(ds.items),
        items_in_samples=len({s.item.item_id or s.item.title for s in all_samples}),
        train_samples=len(ds.samples.get("train", [])),
        valid_samples=len(ds.samples.get("valid", [])),
        test_samples=len(test),
        mean_history=round(fmean(len(s.history) for s in all_samples), 3) if all_samples else 0.0,
        unknown_test_users=len({s.user_id for s in unknown_test}),
        unknown_test_samples=len(unknown_test),
        skipped_rows=len(ds.skipped),
    )
