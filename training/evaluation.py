"""Evaluate students against the teacher on held-out requests and write the report.

Systems, as in the paper's Table 3 where they can be computed here: Prism (full), Prism w/o
user (trained without user vectors), Prism with the zero vector (the served cold-start
path), the untrained base (same architecture, random weights: the zero-shot stand-in) and
the teacher itself (whose text is the reference, so its overlap scores are n/a).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explain.input_format import InputConfig, build_input
from explain.items import Item
from explain.tokenizer import PrismTokenizer
from explain.types import Explanation
from training.data.types import Sample, UserProfile
from training.delexicalise import delexicalise
from training.faithfulness import TitleMatcher
from training.faithfulness_metrics import ExplanationExample, evaluate_explanations
from training.metrics import corpus_scores, distinct_patterns
from training.records import DistilledRecord
from training.report import write_report

# The bars every published model must meet to be promoted, on any data set (a bar whose
# figure a data set cannot give, such as aspect match without user profiles, is n/a).
# `messy_*` figures are on the messy-requests suite (`training.messy`), served answers.
QUALITY_BARS: Mapping[str, tuple[str, float]] = {
    "title_hallucination_rate": ("<=", 0.02),
    "history_grounding_rate": (">=", 0.90),
    # Aspect match macro-averaged over the preferred aspects: the full student writes about
    # the aspect each user prefers ...
    "aspect_match_full_macro": (">=", 0.85),
    # ... and the user vector is why: full minus the w/o-user ablation. The ablation reads
    # part of the preference from the content (an era fan's history sits in few decades):
    # trained as long as the full student it reaches 0.53 (chance is 0.33), so the gap of a
    # healthy student is about 0.4-0.45; students whose user vectors never took hold gave
    # -0.06 to 0.24 against a weaker ablation (README, *Known limitations*).
    "aspect_gap": (">=", 0.35),
    "usr": (">=", 0.5),
    "distinct_patterns_zero_vector": (">=", 30),  # unknown users still get varied wording
    "unfilled_slot_rate": ("<=", 0.01),
    "fallback_rate": ("<=", 0.05),  # the service replaces at most 1 answer in 20
    "messy_ungrammatical_rate": ("<=", 0.01),
    "messy_false_era_rate": ("<=", 0.02),
    "messy_false_similar_title_rate": ("<=", 0.01),
    "messy_false_novelty_rate": ("<=", 0.01),
    "messy_false_several_films_rate": ("<=", 0.01),  # "your recent watches" of one film
    "messy_double_articles": ("<=", 0),
    "messy_inverted_titles": ("<=", 0),
    "messy_invented_title_rate": ("<=", 0.02),
    "messy_fallback_rate": ("<=", 0.03),
    "messy_history_mention_rate": (">=", 0.50),
    # Healthy builds of the same code and data gave 44 and 39 patterns under two sets of
    # library versions; the collapsed wordings this guards against gave 14, 19 and 27.
    "messy_distinct_patterns": (">=", 35),
}
MESSY_KEYS = (
    "ungrammatical_rate",
    "ungrammatical_rate_bare",
    "false_era_rate",
    "false_similar_title_rate",
    "false_novelty_rate",
    "false_shared_genre_rate",
    "false_several_films_rate",
    "double_articles",
    "inverted_titles",
    "invented_title_rate",
    "fallback_rate",
    "history_mention_rate",
    "distinct_patterns",
    "candidates_per_answer",
    "history_used_mean_with_genres",
)


@dataclass(frozen=True)
class SystemOutput:
    texts: list[str]
    templates: list[str]
    unfilled: list[tuple[str, ...]] | None
    history_used: list[int]
    fallbacks: int = 0  # unusable answers (`explain.checks`): served as the evidence sentence


def sample_of(record: DistilledRecord) -> Sample:
    return Sample(record.user_id, record.history, record.item, record.timestamp)


def from_explanations(explanations: Sequence[Explanation]) -> SystemOutput:
    """What the model wrote (its own filled text, before any fallback), and how often the
    service would have replaced it by the evidence sentence."""
    return SystemOutput(
        [e.model_text for e in explanations],
        [e.template for e in explanations],
        [e.unfilled for e in explanations],
        [e.history_used for e in explanations],
        sum(e.fallback for e in explanations),
    )


def from_teacher(
    records: Sequence[DistilledRecord], tokenizer: PrismTokenizer, config: InputConfig
) -> SystemOutput:
    """The teacher's natural text, delexicalised against the student's window for its patterns."""
    texts, templates, used = [], [], []
    for record in records:
        history, item = list(record.history), record.item
        built = build_input(history, item, tokenizer, config)
        recent = list(reversed(history[-config.max_history :]))
        texts.append(record.text)
        templates.append(
            delexicalise(record.text, recent, item, built.evidence, built.history_used)
        )
        used.append(built.history_used)
    return SystemOutput(texts, templates, None, used)


def score_system(
    output: SystemOutput,
    records: Sequence[DistilledRecord],
    *,
    references: Sequence[str] | None,
    matcher: TitleMatcher,
    profiles: Mapping[str, UserProfile],
    features: set[str],
) -> dict[str, float | int | None]:
    samples = [sample_of(r) for r in records]
    examples = [
        ExplanationExample.from_sample(
            sample,
            text,
            template=template,
            profile=profiles.get(sample.user_id),
            unfilled=None if output.unfilled is None else output.unfilled[k],
            history_used=output.history_used[k],
        )
        for k, (sample, text, template) in enumerate(
            zip(samples, output.texts, output.templates, strict=True)
        )
    ]
    scores: dict[str, float | int | None] = dict(
        evaluate_explanations(
            examples,
            matcher,
            features=features,
        )
    )
    scores["fallback_rate"] = output.fallbacks / max(len(output.texts), 1)
    if references is not None:
        scores.update(corpus_scores(output.texts, references, templates=output.templates))
    else:
        patterns = distinct_patterns(output.templates)
        scores.update(
            {
                "usr": corpus_scores(output.texts, output.texts)["usr"],
                "distinct_patterns": patterns.count,
            }
        )
    return scores


def manifest_eval(
    systems: Mapping[str, Mapping[str, float | int | None]],
    messy: Mapping[str, Any] | None = None,
) -> dict[str, float | int | None]:
    """The `eval` object of the manifest: the served model's figures, the ablation gap and
    the messy-requests suite's figures (`messy_*`)."""
    full = systems["Prism (full)"]
    no_user = systems.get("Prism w/o user", {})
    out: dict[str, float | int | None] = {
        "title_hallucination_rate": full.get("title_hallucination_rate"),
        "history_grounding_rate": full.get("history_grounding_rate"),
        "item_mention_rate": full.get("item_mention_rate"),
        "attribute_precision": full.get("attribute_precision"),
        "aspect_match_full": full.get("aspect_match"),
        "aspect_match_no_user": no_user.get("aspect_match"),
        "aspect_match_zero_vector": systems.get("Prism (zero vector)", {}).get("aspect_match"),
        "aspect_match_full_macro": full.get("aspect_match_macro"),
        "aspect_match_no_user_macro": no_user.get("aspect_match_macro"),
        "usr": full.get("usr"),
        "distinct_patterns": full.get("distinct_patterns"),
        "distinct_patterns_zero_vector": systems.get("Prism (zero vector)", {}).get(
            "distinct_patterns"
        ),
        "teacher_distinct_patterns": systems.get("teacher", {}).get("distinct_patterns"),
        "rouge_1": full.get("rouge_1"),
        "rouge_2": full.get("rouge_2"),
        "rouge_l": full.get("rouge_l"),
        "bleu1": full.get("bleu_1"),
        "bleu4": full.get("bleu_4"),
        "fmr": full.get("fmr"),
        "fcr": full.get("fcr"),
        "div": full.get("div"),
        "unfilled_slot_rate": full.get("unfilled_slot_rate"),
        "unfilled_slot_rate_unconstrained": systems.get("Prism (no slot ban)", {}).get(
            "unfilled_slot_rate"
        ),
        "fallback_rate": full.get("fallback_rate"),
        "num_test_samples": full.get("num_test_samples"),
    }
    for key in MESSY_KEYS if messy is not None else ():
        out[f"messy_{key}"] = messy.get(key) if messy is not None else None
    return out


def check_bars(eval_metrics: Mapping[str, float | int | None]) -> dict[str, dict[str, Any]]:
    """Each bar's value and verdict: `passed` is None where the figure is n/a."""
    full = eval_metrics.get("aspect_match_full_macro")
    no_user = eval_metrics.get("aspect_match_no_user_macro")
    values = dict(eval_metrics)
    values["aspect_gap"] = None if full is None or no_user is None else float(full) - float(no_user)
    out = {}
    for key, (op, bar) in QUALITY_BARS.items():
        value = values.get(key)
        ok = None if value is None else float(value) <= bar if op == "<=" else float(value) >= bar
        out[key] = {"value": value, "bar": f"{op} {bar}", "passed": ok}
    return out


def bars_passed(bars: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(b["passed"] is not False for b in bars.values())


def bar_status(bar: Mapping[str, Any]) -> str:
    return {True: "pass", False: "FAIL", None: "n/a"}[bar["passed"]]


def write_evaluation(
    out_dir: Path,
    systems: Mapping[str, Mapping[str, float | int | None]],
    *,
    setup: Mapping[str, Any],
    case_studies: Sequence[Mapping[str, str]],
    messy: Mapping[str, Any] | None = None,
    messy_examples: Sequence[Mapping[str, str]] = (),
) -> Path:
    return write_report(
        out_dir,
        systems=systems,
        setup=setup,
        case_studies=case_studies,
        messy=messy,
        messy_examples=messy_examples,
    ).markdown


def catalogue_features(items: Sequence[Item]) -> set[str]:
    return {f for item in items for f in item.features}
