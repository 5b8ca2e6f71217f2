"""Request bodies for the load test: a ranker's traffic, plus the invalid kinds it must reject.

Kept apart from the locustfile (which needs a running server) so that tests can check the
shapes offline. Named `payloads`, not `requests`: locust puts this directory on sys.path,
and a module called `requests` would shadow the HTTP library locust itself uses.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loadtests.catalog import CATALOG, Film

MAX_HISTORY = 50
INVALID_KINDS = ("empty-title", "history-too-long", "num-beams-out-of-range")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


def known_users_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """PRISM_LOADTEST_KNOWN_USERS (comma list) or the default model's users s0001..s0500."""
    env = os.environ if env is None else env
    raw = env.get("PRISM_LOADTEST_KNOWN_USERS", "")
    users = tuple(u.strip() for u in raw.split(",") if u.strip())
    return users or tuple(f"s{i:04d}" for i in range(1, 501))


@dataclass(frozen=True)
class TrafficMix:
    """What the generated traffic looks like; every field has a PRISM_LOADTEST_* variable."""

    known_users: tuple[str, ...]
    unknown_user_ratio: float = 0.2  # share of requests from users the model never saw
    plain_title_ratio: float = 0.3  # history items sent as "Title (Year)" strings
    options_ratio: float = 0.8  # requests that send `options` (the rest use the defaults)
    max_new_tokens: int = 48
    num_beams: int = 1
    min_slate: int = 2
    max_slate: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrafficMix:
        env = os.environ if env is None else env
        return cls(
            known_users=known_users_from_env(env),
            unknown_user_ratio=_env_float(env, "PRISM_LOADTEST_UNKNOWN_RATIO", 0.2),
            max_new_tokens=int(_env_float(env, "PRISM_LOADTEST_MAX_NEW_TOKENS", 48)),
            num_beams=int(_env_float(env, "PRISM_LOADTEST_NUM_BEAMS", 1)),
            min_slate=int(_env_float(env, "PRISM_LOADTEST_MIN_SLATE", 2)),
            max_slate=int(_env_float(env, "PRISM_LOADTEST_MAX_SLATE", 8)),
        )


def _item(film: Film, *, with_year: bool = True) -> dict[str, Any]:
    attributes: dict[str, Any] = {"genres": list(film.genres)}
    if with_year:
        attributes["year"] = film.year
    return {"item_id": film.item_id, "title": film.display_title, "attributes": attributes}


class PayloadFactory:
    """Builds request bodies from the catalogue with its own RNG (seedable for tests)."""

    def __init__(
        self, mix: TrafficMix, rng: random.Random | None = None, catalog: Sequence[Film] = CATALOG
    ) -> None:
        if len(catalog) <= MAX_HISTORY:
            raise ValueError(f"the catalogue needs more than {MAX_HISTORY} films")
        self.mix = mix
        self.rng = rng or random.Random()
        self.catalog = tuple(catalog)

    # -- users and histories ----------------------------------------------------------------

    def user(self) -> tuple[str | int, bool]:
        """(user_id, expected to be known). Unknown ids are sometimes ints, as rankers send."""
        if not self.mix.known_users or self.rng.random() < self.mix.unknown_user_ratio:
            if self.rng.random() < 0.5:
                return self.rng.randint(10**8, 10**9), False
            return f"anon-{self.rng.getrandbits(48):012x}", False
        return self.rng.choice(self.mix.known_users), True

    def history_length(self) -> int:
        # Most users have short recent histories; some have the full 50.
        return max(1, min(MAX_HISTORY, round(self.rng.triangular(1, MAX_HISTORY, 8))))

    def history(self, length: int, exclude: Sequence[Film] = ()) -> list[Any]:
        pool = [f for f in self.catalog if f not in exclude]
        films = self.rng.sample(pool, length)
        return [
            f.display_title if self.rng.random() < self.mix.plain_title_ratio else _item(f)
            for f in films
        ]

    def options(self) -> dict[str, Any] | None:
        if self.rng.random() >= self.mix.options_ratio:
            return None
        return {"max_new_tokens": self.mix.max_new_tokens, "num_beams": self.mix.num_beams}

    # -- valid requests ---------------------------------------------------------------------

    def explain(self) -> tuple[dict[str, Any], bool]:
        """One ExplainRequest body and whether its user should be known."""
        user_id, known = self.user()
        item = self.rng.choice(self.catalog)
        body: dict[str, Any] = {
            "user_id": user_id,
            "history": self.history(self.history_length(), exclude=(item,)),
            "recommended_item": _item(item),
        }
        if (options := self.options()) is not None:
            body["options"] = options
        return body, known

    def slate(self, size: int | None = None) -> tuple[dict[str, Any], bool]:
        """A batch body: one user and history, several recommended items (a ranker's slate)."""
        if size is None:
            size = self.rng.randint(self.mix.min_slate, self.mix.max_slate)
        user_id, known = self.user()
        items = self.rng.sample(self.catalog, size)
        history = self.history(min(self.history_length(), len(self.catalog) - size), exclude=items)
        options = self.options()
        requests = []
        for item in items:
            request: dict[str, Any] = {
                "user_id": user_id,
                "history": history,
                "recommended_item": _item(item),
            }
            if options is not None:
                request["options"] = options
            requests.append(request)
        return {"requests": requests}, known

    # -- invalid requests (the service must answer 422) ---------------------------------------

    def invalid(self, kind: str) -> dict[str, Any]:
        body, _ = self.explain()
        if kind == "empty-title":
            body["recommended_item"] = {**body["recommended_item"], "title": ""}
        elif kind == "history-too-long":
            films = self.rng.sample(self.catalog, MAX_HISTORY + 1)
            body["history"] = [f.display_title for f in films]
        elif kind == "num-beams-out-of-range":
            body["options"] = {"max_new_tokens": self.mix.max_new_tokens, "num_beams": 99}
        else:
            raise ValueError(f"unknown invalid kind {kind!r}; one of {INVALID_KINDS}")
        return body
