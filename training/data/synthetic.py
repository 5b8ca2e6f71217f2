"""Synthetic users over the sample catalogue: consistent tastes and a hidden preferred aspect.

Each user has 1-3 favourite genres and 1-2 favourite decades, which shape the history, and
one preferred explanation aspect ("genre", "era" or "similar"), drawn from its own random
stream so that it is independent of the tastes. The history therefore says nothing about
the aspect: only a learned user vector can carry it, which is what makes the "w/o user"
ablation measurable on this data. The grounded teacher reads `Dataset.profiles` to write
each user's explanations in their aspect, and evaluation checks the student did the same.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from explain.evidence import compute_evidence
from explain.items import Item, distinct_recent, rewatched
from training.aspects import ASPECTS, Aspect
from training.data.catalog import alternate_titles, decade_of, load_catalog
from training.data.sequences import build_dataset, make_samples, user_sequences
from training.data.types import SPLITS, Dataset, Interaction, Sample, UserProfile

USER_PREFIX = "s"  # "s0001": users with train samples
COLD_PREFIX = "c"  # "c0001": users who only appear in test (the unknown-user evaluation)
START = 1_420_070_400  # 2015-01-01 UTC, when the synthetic clock starts
SPAN = 3 * 365 * 86_400  # every regular user's interactions spread over these three years
COLD_SPAN = 60 * 86_400  # cold users arrive in the two months after the span

K = TypeVar("K", bound=Hashable)


# Each user also writes in one of this many consistent phrasing styles (the grounded teacher
# picks sentence patterns by it), so wording, like the aspect, is something a user vector can
# learn; a teacher that picked patterns at random would teach only their average.
VOICES = 6


def _weighted_sample(rng: random.Random, weights: Mapping[K, int], k: int) -> list[K]:
    """`k` distinct keys, each drawn with probability proportional to its weight."""
    pool = {key: w for key, w in weights.items() if w > 0}
    chosen: list[K] = []
    for _ in range(min(k, len(pool))):
        keys = list(pool)
        pick = rng.choices(keys, weights=[pool[key] for key in keys])[0]
        chosen.append(pick)
        del pool[pick]
    return chosen


class _Catalog:
    """The catalogue with each item's genres and decade computed once (`Item.features` is
    recomputed on every access, and the generator asks for it ~10^6 times)."""

    def __init__(self, catalog: Mapping[str, Item]) -> None:
        self.items = [catalog[key] for key in sorted(catalog)]
        self.genres = [frozenset(i.features) for i in self.items]
        self.decades = [decade_of(i) for i in self.items]
        counts: dict[str, int] = {}
        for genres in self.genres:
            for genre in genres:
                counts[genre] = counts.get(genre, 0) + 1
        self.genre_counts = dict(sorted(counts.items()))
        self.by_genre: dict[str, list[int]] = {g: [] for g in self.genre_counts}
        for position, genres in enumerate(self.genres):
            for genre in genres:
                self.by_genre[genre].append(position)

    def liked(self, genres: Iterable[str]) -> list[int]:
        """Positions of the items with any of `genres`, in catalogue order."""
        return sorted({k for g in genres for k in self.by_genre.get(g, ())})


def _tastes(
    rng: random.Random, cat: _Catalog, *, broad: bool
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Genres weighted by how many films have them, then decades where those genres are:
    1-3 genres and 1-2 decades for a focused user, 3-6 and 3-5 for a broad one."""
    genres = _weighted_sample(
        rng, cat.genre_counts, rng.randint(3, 6) if broad else rng.randint(1, 3)
    )
    decade_counts: dict[int, int] = {}
    for k in cat.liked(genres):
        decade = cat.decades[k]
        if decade is not None:
            decade_counts[decade] = decade_counts.get(decade, 0) + 1
    wanted = rng.randint(3, 5) if broad else rng.randint(1, 2)
    decades = _weighted_sample(rng, dict(sorted(decade_counts.items())), wanted)
    return tuple(genres), tuple(sorted(decades))


class _Pool:
    """Catalogue positions drawn uniformly without replacement, each handed out once across
    the pools that share `used`. The shuffle is lazy (one Fisher-Yates step per draw):
    shuffling the whole catalogue for every user made generation 5x slower."""

    def __init__(self, rng: random.Random, positions: Iterable[int], used: set[int]) -> None:
        self.rng = rng
        self.order = list(positions)
        self.used = used
        self.cursor = 0

    def take(self) -> int | None:
        order = self.order
        while self.cursor < len(order):
            pick = self.rng.randrange(self.cursor, len(order))
            order[self.cursor], order[pick] = order[pick], order[self.cursor]
            position = order[self.cursor]
            self.cursor += 1
            if position not in self.used:
                self.used.add(position)
                return position
        return None


def _sequence(
    rng: random.Random, cat: _Catalog, profile: UserProfile, length: int, taste_fraction: float
) -> list[Item]:
    """`length` distinct items: mostly the tastes (genre and decade, else genre), else any."""
    used: set[int] = set()
    liked = cat.liked(profile.genres)
    both = _Pool(rng, [k for k in liked if cat.decades[k] in profile.decades], used)
    genre_only = _Pool(rng, liked, used)
    anything = _Pool(rng, range(len(cat.items)), used)
    out: list[Item] = []
    while len(out) < min(length, len(cat.items)):
        pools = (both, genre_only, anything) if rng.random() < taste_fraction else (anything,)
        for pool in pools:
            position = pool.take()
            if position is not None:
                out.append(cat.items[position])
                break
    return out


def _timestamps(rng: random.Random, count: int, start: int, span: int) -> list[int]:
    """Strictly increasing, one in each of `count` equal slots: spread over the whole span,
    so a global time split leaves every user train samples and most users test samples."""
    width = max(1, span // max(count, 1))
    return [start + k * width + rng.randrange(width) for k in range(count)]


def generate_users(
    catalog: Mapping[str, Item],
    *,
    num_users: int = 600,
    seed: int = 0,
    min_len: int = 8,
    max_len: int = 60,
    taste_fraction: float = 0.85,
    cold_users: int = 0,
    broad_share: float = 0.4,
    broad_taste_fraction: float = 0.5,
) -> tuple[list[Interaction], dict[str, UserProfile]]:
    """Interactions (grouped by user, each user's in time order) and each user's profile.

    Deterministic in `seed`. Regular users are "s0001"...; `cold_users` more ("c0001"...)
    interact only after every regular user, so a time split puts them in test alone.
    A `broad_share` of users have broad, noisy tastes (many genres and decades, and only
    half their history from them), as real users do; the rest are focused.
    """
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    # A separate stream: the aspect never depends on (or shifts) the tastes drawn above.
    aspect_rng = random.Random(f"prism-synthetic-aspect-{seed}")
    # Another one for the phrasing style, so adding it left tastes and aspects unchanged.
    voice_rng = random.Random(f"prism-synthetic-voice-{seed}")
    # And one for breadth, so that the tastes of focused users stay as they were.
    breadth_rng = random.Random(f"prism-synthetic-breadth-{seed}")
    cat = _Catalog(catalog)
    interactions: list[Interaction] = []
    profiles: dict[str, UserProfile] = {}
    groups = [(USER_PREFIX, num_users, START, SPAN)]
    groups.append((COLD_PREFIX, cold_users, START + SPAN, COLD_SPAN))
    for prefix, count, start, span in groups:
        for number in range(1, count + 1):
            user_id = f"{prefix}{number:04d}"
            broad = breadth_rng.random() < broad_share
            genres, decades = _tastes(rng, cat, broad=broad)
            aspect: Aspect = aspect_rng.choice(ASPECTS)
            voice = voice_rng.randrange(VOICES)
            profile = UserProfile(user_id, genres, decades, aspect, voice)
            profiles[user_id] = profile
            length = rng.randint(min_len, max_len)
            fraction = broad_taste_fraction if broad else taste_fraction
            sequence = _sequence(rng, cat, profile, length, fraction)
            times = _timestamps(rng, len(sequence), start, span)
            interactions += [
                Interaction(user_id, item.item_id or item.title, t)
                for item, t in zip(sequence, times, strict=True)
            ]
    return interactions, profiles


def build_synthetic_dataset(
    *,
    num_users: int = 600,
    seed: int = 0,
    max_history: int = 50,
    min_len: int = 8,
    max_len: int = 60,
    taste_fraction: float = 0.85,
    cold_users: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Dataset:
    """The embedded default's data: the sample catalogue, synthetic users, a time split.

    Cold users' samples are appended to test after the split, so however many there are
    they never reach train (and the user index), and never shift the cut points.
    """
    catalog = load_catalog()
    interactions, profiles = generate_users(
        catalog,
        num_users=num_users,
        seed=seed,
        min_len=min_len,
        max_len=max_len,
        taste_fraction=taste_fraction,
        cold_users=cold_users,
    )
    regular = [i for i in interactions if not i.user_id.startswith(COLD_PREFIX)]
    cold = [i for i in interactions if i.user_id.startswith(COLD_PREFIX)]
    ds = build_dataset(
        "synthetic-films",
        catalog,
        regular,
        max_history=max_history,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        profiles=profiles,
    )
    for sequence in user_sequences(catalog, cold, ds.skipped).values():
        ds.samples["test"] += make_samples(catalog, sequence, max_history=max_history)
    ds.alternates = alternate_titles()
    return ds


def aspect_evidence(sample: Sample, aspect: Aspect) -> bool:
    """Whether the request itself holds the evidence an explanation in `aspect` needs."""
    recent_first = distinct_recent(sample.history, sample.item)
    rewatch = rewatched(sample.history, sample.item)
    evidence = compute_evidence(recent_first, sample.item, rewatch=rewatch)
    if aspect == "genre":
        return bool(evidence.shared)
    if aspect == "era":
        return evidence.era != "none"
    return bool(evidence.similar)


def evidence_rates(ds: Dataset, splits: Sequence[str] = SPLITS) -> dict[str, float]:
    """Per aspect: the share of its users' samples whose evidence is available."""
    hits = {a: 0 for a in ASPECTS}
    totals = {a: 0 for a in ASPECTS}
    for split in splits:
        for sample in ds.samples.get(split, []):
            profile = ds.profiles.get(sample.user_id)
            if profile is None:
                continue
            totals[profile.aspect] += 1
            hits[profile.aspect] += aspect_evidence(sample, profile.aspect)
    return {a: hits[a] / totals[a] if totals[a] else 0.0 for a in ASPECTS}
