"""Scoring the served answers to the messy-requests suite (`training.messy`).

Every figure is about what a user reads: the served text (the model's sentence, or the
evidence sentence when no candidate passed the verifier). Grammar is judged by
`training.grammar`, which shares no code with what writes or verifies the sentences; false
claims by `training.claim_audit` under the written rules of `explain.claims`; invented
titles by the catalogue's `TitleMatcher`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from explain.explainer import Explainer
from explain.types import ExplainJob, Explanation
from training.claim_audit import audit
from training.faithfulness import TitleMatcher
from training.grammar import names_of, problems

CLAIMS = ("era", "similar_title", "novelty", "shared_genre", "several_films")
EXAMPLES = 12  # served answers shown in the report


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _mentions_history(text: str, job: ExplainJob) -> bool:
    names = {names_of(h.title) for h in job.history}
    return any(name and name.lower() not in ("unknown",) and name in text for name in names)


def score_messy(
    jobs: Sequence[ExplainJob], answers: Sequence[Explanation], matcher: TitleMatcher
) -> dict[str, Any]:
    """The suite's figures (rates are shares in [0, 1]; None where nothing was eligible)."""
    n = len(answers)
    grammar: Counter[str] = Counter()
    ungrammatical = {True: 0, False: 0}  # by "sent with genres"
    sent = Counter(bool(j.item.features) for j in jobs)
    claims: Counter[str] = Counter()
    false: Counter[str] = Counter()
    mentions = {True: 0, False: 0}
    with_history = Counter(bool(j.item.features) for j in jobs if j.history)
    invented = 0
    used: dict[bool, list[int]] = {True: [], False: []}
    for job, answer in zip(jobs, answers, strict=True):
        rich = bool(job.item.features)
        names = [names_of(i.title) for i in (*job.history, job.item)]
        found = problems(answer.text, names)
        grammar.update(found)
        ungrammatical[rich] += bool(found)
        for finding in audit(answer.text, list(reversed(job.history)), job.item):
            claims[finding.claim] += 1
            false[finding.claim] += finding.false
        if job.history:
            mentions[rich] += _mentions_history(answer.text, job)
        invented += bool(matcher.hallucinated(answer.text, [*job.history, job.item]))
        used[rich].append(answer.history_used)
    served_patterns = Counter(a.served_template for a in answers)
    top = served_patterns.most_common(1)[0][1] if served_patterns else 0
    out: dict[str, Any] = {
        "requests": n,
        "with_genres": sent[True],
        "ungrammatical_rate": _rate(sum(ungrammatical.values()), n),
        "ungrammatical_rate_with_genres": _rate(ungrammatical[True], sent[True]),
        "ungrammatical_rate_bare": _rate(ungrammatical[False], sent[False]),
        "grammar_problems": dict(grammar.most_common()),
        "double_articles": grammar["double_article"],
        "inverted_titles": grammar["inverted_title"],
        "invented_title_rate": _rate(invented, n),
        "history_mention_rate": _rate(sum(mentions.values()), sum(with_history.values())),
        "history_mention_rate_with_genres": _rate(mentions[True], with_history[True]),
        "history_mention_rate_bare": _rate(mentions[False], with_history[False]),
        "distinct_patterns": len(served_patterns),
        "top_pattern_share": _rate(top, n),
        "fallback_rate": _rate(sum(a.fallback for a in answers), n),
        "fallback_reasons": dict(Counter(a.fallback_reason for a in answers if a.fallback)),
        "second_pass_rate": _rate(sum(a.candidates_tried > 1 for a in answers), n),
        "candidates_per_answer": sum(a.candidates_tried for a in answers) / max(n, 1),
        "history_used_mean_with_genres": _mean(used[True]),
        "history_used_mean_bare": _mean(used[False]),
        "history_used_at_most_1_with_genres": _rate(
            sum(u <= 1 for u in used[True]), len(used[True])
        ),
        "answers_with_evidence": _rate(sum(bool(a.evidence) for a in answers), n),
    }
    for claim in CLAIMS:
        out[f"{claim}_claims"] = claims[claim]
        out[f"false_{claim}_rate"] = _rate(false[claim], claims[claim]) if claims[claim] else 0.0
    return out


def _mean(values: Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


def examples(
    jobs: Sequence[ExplainJob], answers: Sequence[Explanation], count: int = EXAMPLES
) -> list[dict[str, str]]:
    """A spread of served answers for the report: every n-th request."""
    step = max(1, len(jobs) // count)
    rows = []
    for job, answer in list(zip(jobs, answers, strict=True))[::step][:count]:
        history = "; ".join(h.title for h in job.history[-3:])
        more = len(job.history) - 3
        rows.append(
            {
                "history (newest 3)": history + (f" (+{more} more)" if more > 0 else ""),
                "item": job.item.title + ("" if job.item.features else " (bare)"),
                "served": answer.text + (" [fallback]" if answer.fallback else ""),
            }
        )
    return rows


def run_messy(
    explainer: Explainer,
    jobs: Sequence[ExplainJob],
    matcher: TitleMatcher,
    *,
    progress: Callable[[int], object] | None = None,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    answers = explainer.explain_all(jobs, progress=progress)
    return score_messy(jobs, answers, matcher), examples(jobs, answers)
