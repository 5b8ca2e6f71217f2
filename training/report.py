"""The evaluation report: `report.md` (tables like the paper's Table 3), `report.json`, a chart.

Rows are systems ("Prism (full)", "Prism w/o user", "untrained base", "teacher", then any
other in the order given); columns are the metrics of `training.metrics` and
`training.faithfulness_metrics` under the keys those modules return. A metric a system does
not have, or one that is None, renders as "n/a".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from matplotlib.figure import Figure
from matplotlib.patches import Patch

SYSTEM_ORDER = ("Prism (full)", "Prism w/o user", "untrained base", "teacher")
MARKDOWN_FILE, JSON_FILE, CHART_FILE = "report.md", "report.json", "chart.png"
NA = "n/a"

Kind = Literal["rate", "count", "value"]


@dataclass(frozen=True)
class Column:
    key: str  # the metric's key in a system's mapping
    header: str
    kind: Kind  # rate/value: 3 decimals; count: an integer


TEXT_COLUMNS = (
    Column("rouge_1", "ROUGE-1", "rate"),
    Column("rouge_2", "ROUGE-2", "rate"),
    Column("rouge_l", "ROUGE-L", "rate"),
    Column("bleu_1", "BLEU-1", "rate"),
    Column("bleu_4", "BLEU-4", "rate"),
    Column("bertscore_f1", "BERTScore-F1", "rate"),
    Column("usr", "USR", "rate"),
    Column("distinct_patterns", "patterns", "count"),
    Column("pattern_ratio", "pattern ratio", "rate"),
    Column("distinct_1", "Distinct-1", "rate"),
    Column("distinct_2", "Distinct-2", "rate"),
)
GROUNDING_COLUMNS = (
    Column("fmr", "FMR", "rate"),
    Column("fcr", "FCR", "rate"),
    Column("div", "DIV ↓", "value"),
    Column("title_hallucination_rate", "hallucination ↓", "rate"),
    Column("hallucinated_titles", "halluc. titles", "count"),
    Column("history_grounding_rate", "grounding", "rate"),
    Column("item_mention_rate", "item mention", "rate"),
    Column("attribute_precision", "attr. precision", "rate"),
    Column("aspect_match", "aspect match", "rate"),
    Column("aspect_eligible", "aspect eligible", "count"),
    Column("aspect_match_macro", "aspect match (macro)", "rate"),
    Column("unfilled_slot_rate", "unfilled slots ↓", "rate"),
    Column("fallback_rate", "fallback ↓", "rate"),
    Column("num_test_samples", "samples", "count"),
)
# The rates the chart compares across systems (each in [0, 1]).
CHART_KEYS = (
    ("title_hallucination_rate", "hallucination"),
    ("history_grounding_rate", "grounding"),
    ("item_mention_rate", "item mention"),
    ("attribute_precision", "attr. precision"),
    ("aspect_match", "aspect match"),
    ("unfilled_slot_rate", "unfilled slots"),
    ("fmr", "FMR"),
)


@dataclass(frozen=True)
class Paths:
    markdown: Path
    json: Path
    chart: Path


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if isinstance(value, float) and not math.isfinite(value) else value


def format_value(value: Any, kind: Kind = "rate") -> str:
    number = _number(value)
    if number is None:
        return NA
    return str(round(number)) if kind == "count" else f"{number:.3f}"


def ordered_systems(systems: Mapping[str, Any]) -> list[str]:
    known = [name for name in SYSTEM_ORDER if name in systems]
    return known + [name for name in systems if name not in SYSTEM_ORDER]


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(
    names: Sequence[str],
    systems: Mapping[str, Mapping[str, float | int | None]],
    columns: Sequence[Column],
) -> list[str]:
    lines = [
        "| system | " + " | ".join(c.header for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name in names:
        cells = [format_value(systems[name].get(c.key), c.kind) for c in columns]
        lines.append(f"| {_cell(name)} | " + " | ".join(cells) + " |")
    return lines


def _setup_lines(setup: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in setup.items():
        if isinstance(value, Mapping | list | tuple):
            shown = json.dumps(_jsonable(value), ensure_ascii=False)
        elif isinstance(value, float):
            shown = format_value(value, "value")
        else:
            shown = str(value)
        lines.append(f"- **{_cell(key)}**: {_cell(shown)}")
    return lines or ["- (none given)"]


def _case_lines(case_studies: Sequence[Mapping[str, str]]) -> list[str]:
    if not case_studies:
        return ["(none)"]
    keys: list[str] = []
    for case in case_studies:
        keys += [k for k in case if k not in keys]
    lines = ["| " + " | ".join(_cell(k) for k in keys) + " |", "|" + "---|" * len(keys)]
    for case in case_studies:
        lines.append("| " + " | ".join(_cell(case.get(k, "")) for k in keys) + " |")
    return lines


# The messy-requests figures shown, in order (`training.messy_eval.score_messy` keys).
MESSY_ROWS: tuple[tuple[str, str, Kind], ...] = (
    ("requests", "requests (with genres and year: the rest bare titles)", "count"),
    ("with_genres", "  of which with genres", "count"),
    ("ungrammatical_rate", "ungrammatical ↓", "rate"),
    ("ungrammatical_rate_bare", "  bare-title requests ↓", "rate"),
    ("false_era_rate", "false era claims (of era claims) ↓", "rate"),
    ("era_claims", "  era claims", "count"),
    ("false_similar_title_rate", "similarity without a shared genre ↓", "rate"),
    ("similar_title_claims", "  similarity claims (genres known)", "count"),
    ("false_novelty_rate", "novelty while the history shares the genre ↓", "rate"),
    ("novelty_claims", "  novelty claims", "count"),
    ("false_shared_genre_rate", "unsupported genre-taste claims ↓", "rate"),
    ("false_several_films_rate", "several films spoken of, one in the history ↓", "rate"),
    ("several_films_claims", "  claims about several films", "count"),
    ("double_articles", "double articles ↓", "count"),
    ("inverted_titles", "inverted titles left ↓", "count"),
    ("invented_title_rate", "answers with an invented title ↓", "rate"),
    ("history_mention_rate", "answers naming a history film (history given)", "rate"),
    ("history_mention_rate_with_genres", "  with genres", "rate"),
    ("history_mention_rate_bare", "  bare titles", "rate"),
    ("distinct_patterns", "distinct served patterns", "count"),
    ("top_pattern_share", "share of the commonest pattern ↓", "rate"),
    ("fallback_rate", "fallback (evidence sentence served) ↓", "rate"),
    ("second_pass_rate", "answers that needed the second pass", "rate"),
    ("candidates_per_answer", "candidates checked per answer", "value"),
    ("history_used_mean_with_genres", "history titles in the input, with genres (mean)", "value"),
    ("history_used_mean_bare", "history titles in the input, bare (mean)", "value"),
    ("answers_with_evidence", "answers carrying evidence", "rate"),
)


def _messy_lines(messy: Mapping[str, Any], examples: Sequence[Mapping[str, str]]) -> list[str]:
    lines = ["| figure | value |", "|---|---:|"]
    for key, label, kind in MESSY_ROWS:
        lines.append(f"| {_cell(label)} | {format_value(messy.get(key), kind)} |")
    for key in ("grammar_problems", "fallback_reasons"):
        found = messy.get(key) or {}
        shown = ", ".join(f"{k} {v}" for k, v in found.items()) or "none"
        lines += ["", f"{key.replace('_', ' ').capitalize()}: {_cell(shown)}."]
    return [*lines, "", "Served answers (every n-th request):", "", *_case_lines(examples)]


def render_markdown(
    systems: Mapping[str, Mapping[str, float | int | None]],
    setup: Mapping[str, Any],
    case_studies: Sequence[Mapping[str, str]],
    messy: Mapping[str, Any] | None = None,
    messy_examples: Sequence[Mapping[str, str]] = (),
) -> str:
    names = ordered_systems(systems)
    lines = ["# Prism evaluation report", "", "## Setup", "", *_setup_lines(setup), ""]
    lines += ["## Text quality and diversity", "", *_table(names, systems, TEXT_COLUMNS), ""]
    if any(_number(systems[n].get("bertscore_f1")) is None for n in names):
        lines += ["BERTScore-F1: n/a (no local weights) where no local encoder was given.", ""]
    lines += [
        "## Features, faithfulness and personalisation",
        "",
        *_table(names, systems, GROUNDING_COLUMNS),
        "",
        # Why this note: USR counts filled sentences, so other titles in the same sentence
        # look "unique"; the pattern count is the honest diversity number beside it.
        "Rates are shares in [0, 1], 3 decimals; ↓ = lower is better. USR counts distinct"
        " filled sentences, *patterns* distinct delexicalised templates. Aspect match is"
        " over the *aspect eligible* examples (a profile, and evidence for its aspect);"
        " *macro* averages it over the preferred aspects, each weighing the same (the"
        " quality bar's aspect gap is measured on it);"
        " grounding over the requests that have a history (a cold start has none).",
        "",
        "## Case studies",
        "",
        *_case_lines(case_studies),
        "",
    ]
    if messy is not None:
        lines += [
            "## Messy requests",
            "",
            "Requests as real catalogues send them, built from this data set's own catalogue"
            " (`training.messy`): catalogue sort-form titles with alternate titles, half bare"
            " titles, histories of 1 to 50 films, unknown users (the zero vector). Figures are"
            " on the served answers; grammar by an independent checker (`training.grammar`),"
            " claims by the written rules (`explain.claims`).",
            "",
            *_messy_lines(messy, messy_examples),
            "",
        ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    # Strict JSON has no NaN or Infinity: they become null, like a missing metric.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)  # paths, datetimes, enums: their readable form


def render_chart(systems: Mapping[str, Mapping[str, float | int | None]], path: Path) -> None:
    """Grouped bars: one group per rate, one bar per system; a missing rate is marked n/a."""
    names = ordered_systems(systems)
    fig = Figure(figsize=(max(6.0, 1.4 * len(CHART_KEYS)), 4.0), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for s, name in enumerate(names):
        for k, (key, _) in enumerate(CHART_KEYS):
            x = k + (s - (len(names) - 1) / 2) * width
            value = _number(systems[name].get(key))
            if value is not None:
                ax.bar(x, float(value), width, color=f"C{s}")
            # The value on every bar: a 0.000 bar is otherwise invisible, and n/a unmarked.
            label = NA if value is None else f"{value:.2f}"
            top = 0.0 if value is None else float(value)
            ax.text(x, top + 0.01, label, ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(range(len(CHART_KEYS)), [label for _, label in CHART_KEYS], fontsize=8)
    ax.set_ylim(0, 1.25)  # headroom: the legend sits above the bars, never over them
    ax.set_ylabel("share of explanations")
    ax.set_title("Faithfulness and personalisation per system")
    if names:
        handles = [Patch(color=f"C{s}", label=name) for s, name in enumerate(names)]
        ax.legend(handles=handles, fontsize=8, loc="upper center", ncol=min(4, len(names)))
    fig.tight_layout()
    # Figure (not pyplot) renders with Agg and keeps no global state between calls.
    fig.savefig(path, format="png")


def write_report(
    out_dir: Path | str,
    *,
    systems: Mapping[str, Mapping[str, float | int | None]],
    setup: Mapping[str, Any],
    case_studies: Sequence[Mapping[str, str]],
    messy: Mapping[str, Any] | None = None,
    messy_examples: Sequence[Mapping[str, str]] = (),
) -> Paths:
    """Write `report.md`, `report.json` and `chart.png` into `out_dir` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = Paths(out / MARKDOWN_FILE, out / JSON_FILE, out / CHART_FILE)
    markdown = render_markdown(systems, setup, case_studies, messy, messy_examples)
    paths.markdown.write_text(markdown, encoding="utf-8")
    payload = {
        "systems": {name: _jsonable(systems[name]) for name in ordered_systems(systems)},
        "setup": _jsonable(setup),
        "case_studies": _jsonable(list(case_studies)),
        "messy": _jsonable(messy),
        "messy_examples": _jsonable(list(messy_examples)),
        "columns": [
            {"key": c.key, "header": c.header, "kind": c.kind}
            for c in (*TEXT_COLUMNS, *GROUNDING_COLUMNS)
        ],
    }
    paths.json.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    render_chart(systems, paths.chart)
    return paths
