import json

from training.report import format_value, ordered_systems, write_report

SYSTEMS: dict[str, dict[str, float | int | None]] = {
    "teacher": {"rouge_l": 0.29531, "usr": 0.8, "title_hallucination_rate": 0.25},
    "custom baseline": {"rouge_l": 0.1},
    "Prism (full)": {
        "rouge_l": 0.2574,
        "bertscore_f1": None,
        "distinct_patterns": 12.0,
        "history_grounding_rate": 0.9,
        "title_hallucination_rate": 0.0,
        "aspect_match": float("nan"),
        "num_test_samples": 40,
    },
    "Prism w/o user": {"rouge_l": 0.2478, "history_grounding_rate": 0.85},
}
SETUP = {"model": {"d_model": 64, "layers": 2}, "samples": 40, "seeds": [0, 1], "build_s": 12.5}
CASES = [
    {
        "history": "E.T., Star Wars",
        "item": "Back to the Future",
        "teacher": 'based on "The Wizard of Oz" | influenced',
        "Prism (full)": "Back to the Future is a sci-fi film from the 1980s.",
    }
]


def test_values_are_formatted_consistently():
    assert format_value(0.25) == "0.250"
    assert format_value(12.0, "count") == "12"
    assert format_value(None) == format_value(float("nan")) == format_value(True) == "n/a"


def test_known_systems_come_first_in_paper_order():
    assert ordered_systems(SYSTEMS) == [
        "Prism (full)",
        "Prism w/o user",
        "teacher",
        "custom baseline",
    ]


def test_write_report_files(tmp_path):
    paths = write_report(tmp_path / "out", systems=SYSTEMS, setup=SETUP, case_studies=CASES)
    markdown = paths.markdown.read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| Prism (full) |")]
    assert len(rows) == 2  # one row in each table
    assert markdown.index("| Prism (full) |") < markdown.index("| Prism w/o user |")
    assert markdown.index("| Prism w/o user |") < markdown.index("| teacher |")
    assert "| 0.257 |" in rows[0] and "| n/a |" in rows[0]  # ROUGE-L, BERTScore missing
    assert "| 12 |" in rows[0]  # a count, not a rate
    assert "n/a (no local weights)" in markdown
    assert "| 0.295 |" in markdown  # the teacher's ROUGE-L, 3 decimals
    assert "**samples**: 40" in markdown and '"d_model": 64' in markdown
    assert "The Wizard of Oz" in markdown and "\\| influenced" in markdown  # escaped pipe

    payload = json.loads(paths.json.read_text())
    assert list(payload["systems"]) == ordered_systems(SYSTEMS)
    assert payload["systems"]["Prism (full)"]["aspect_match"] is None  # NaN -> null
    assert payload["systems"]["Prism (full)"]["num_test_samples"] == 40
    assert payload["setup"]["seeds"] == [0, 1]
    assert payload["case_studies"] == CASES

    png = paths.chart.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert paths.chart.name == "chart.png"
