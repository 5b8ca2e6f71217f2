"""The messy-requests suite: built from our own catalogue, scored on served answers."""

import pytest

from explain.items import Item
from explain.types import ExplainJob, Explanation
from training.data.catalog import alternate_titles, load_catalog
from training.faithfulness import TitleMatcher
from training.messy import describe, messy_requests
from training.messy_eval import score_messy


@pytest.fixture(scope="module")
def catalogue():
    return load_catalog()


def test_the_suite_looks_like_real_traffic(catalogue):
    jobs = messy_requests(catalogue, alternate_titles())
    assert jobs == messy_requests(catalogue, alternate_titles())  # deterministic
    facts = describe(jobs)
    assert facts["requests"] == 360 and facts["with_genres"] == 180
    assert facts["history_min"] == 1 and facts["history_max"] >= 40
    titles = [i.title for j in jobs for i in (*j.history, j.item)]
    assert any(", The (" in t for t in titles)  # catalogue sort form
    assert any(t.count("(") == 2 for t in titles)  # an alternate title, then the year
    assert "unknown" in titles
    assert all(j.user_id not in ("", None) and j.user_id.startswith("messy-") for j in jobs)
    bare = [j for j in jobs if not j.item.features]
    assert all(not h.features for j in bare for h in j.history)
    decades = {h.year // 10 for j in jobs for h in j.history if h.year}
    assert len(decades) >= 8


def answer(text, *, fallback=None, template="t", tried=1, used=3):
    return Explanation(
        text, False, 10, 8, used, fallback_reason=fallback, served_template=template,
        candidates_tried=tried,
    )  # fmt: skip


def test_scores_are_read_from_the_served_text(catalogue):
    thing = Item("Thing, The (1982)", "1", {"genres": ["Horror", "Sci-Fi"]})
    alien = Item("Alien (1979)", "2", {"genres": ["Horror", "Sci-Fi"]})
    heat = Item("Heat (1995)", "3", {"genres": ["Crime"]})
    bare_heat = Item("Heat (1995)", "3", {})
    jobs = [
        ExplainJob("a", (thing, alien), heat),
        ExplainJob("b", (thing,), bare_heat),
        ExplainJob("c", (), heat),
        ExplainJob("d", (alien, thing), heat),
    ]
    answers = [
        answer("Heat has much in common with The Thing, which you watched."),  # similar: false
        answer("Thing, The leads to Heat.", template="u"),  # inverted title, names history
        answer("Heat is a crime film.", fallback="unknown_sentence", tried=5, template="v"),
        answer("Heat is a the Alien kind of film.", template="w"),  # double article
    ]
    matcher = TitleMatcher([thing, alien, heat, Item("Psycho (1960)")])
    scores = score_messy(jobs, answers, matcher)
    assert scores["requests"] == 4 and scores["with_genres"] == 3
    assert scores["ungrammatical_rate"] == 0.5
    assert scores["ungrammatical_rate_bare"] == 1.0
    assert scores["double_articles"] == 1 and scores["inverted_titles"] == 1
    assert scores["similar_title_claims"] == 1 and scores["false_similar_title_rate"] == 1.0
    assert scores["history_mention_rate"] == pytest.approx(2 / 3)  # c has no history
    assert scores["fallback_rate"] == 0.25 and scores["fallback_reasons"] == {"unknown_sentence": 1}
    assert scores["candidates_per_answer"] == 2.0 and scores["second_pass_rate"] == 0.25
    assert scores["distinct_patterns"] == 4 and scores["invented_title_rate"] == 0.0
    assert (
        score_messy(jobs[:1], [answer("Heat beats Psycho.")], matcher)["invented_title_rate"] == 1
    )
