import pytest

from explain.items import Item
from training.data.types import Sample
from training.prompts import (
    DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATE_TEXT,
    PromptTemplate,
    TemplateError,
    format_item,
    format_teacher_prompt,
    load_template,
)
from training.teachers import (
    GroundedTeacher,
    OpenAICompatibleTeacher,
    Teacher,
    TeacherFailure,
    TeacherRequest,
    TeacherResultCountError,
    check_results,
)
from training.teachers.quality import clean_output, degeneracy

HISTORY = (
    Item("Star Wars (1977)", "1", {"genres": ["Action", "Sci-Fi"]}),
    Item("Matrix, The (1999)", "2", {"genres": ["Sci-Fi"]}),
)
ITEM = Item("Back to the Future (1985)", "3", {"genres": ["Comedy", "Sci-Fi"]})
SAMPLE = Sample("u1", HISTORY, ITEM, 10)


def test_the_default_template_is_the_papers():
    assert DEFAULT_TEMPLATE.template_id == "oracle-faithful/1"
    assert DEFAULT_TEMPLATE_TEXT.startswith(
        "Generate a short, personalized, and persuasive explanation for the following "
        "recommendation. Context:\n\n- User's movie viewing history: {history}\n"
        "- Recommended movie: {item_to_explain}\n\n"
        "Task: Explain WHY this is a good recommendation based on the user's history.\n\n"
    )
    assert (
        "- Be specific: Link features of the recommended movie (e.g., genre, director, actors, theme) to patterns in the history.\n"
        in DEFAULT_TEMPLATE_TEXT
    )
    assert (
        "- Be natural: Sound like a genuine recommendation from a friend.\n"
        in DEFAULT_TEMPLATE_TEXT
    )
    assert "- Be concise: Ideally one or two sentences.\n" in DEFAULT_TEMPLATE_TEXT
    assert DEFAULT_TEMPLATE_TEXT.endswith("\n\n- Start the explanation directly. Explanation:")
    assert PromptTemplate.from_text(DEFAULT_TEMPLATE_TEXT) is DEFAULT_TEMPLATE


def test_the_prompt_lists_the_history_oldest_first_and_the_items_genres():
    prompt = format_teacher_prompt(DEFAULT_TEMPLATE, SAMPLE)
    assert "- User's movie viewing history: Star Wars (1977), The Matrix (1999)\n" in prompt
    assert "- Recommended movie: Back to the Future (1985) (comedy, sci-fi)\n" in prompt
    assert "{" not in prompt
    assert format_item(Item("Heat")) == "Heat"
    assert format_item(Item("Heat", attributes={"year": 1995})) == "Heat (1995)"


def test_a_custom_template_is_loaded_validated_and_versioned_by_its_text(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("Seen: {history}. Explain {item_to_explain} (keep {braces}).\n")
    template = load_template(path)
    assert template.name == "short" and template.version.startswith("sha256-")
    prompt = format_teacher_prompt(template, SAMPLE)
    assert prompt == (
        "Seen: Star Wars (1977), The Matrix (1999). "
        "Explain Back to the Future (1985) (comedy, sci-fi) (keep {braces})."
    )
    path.write_text("Seen: {history}. Explain {item_to_explain}!\n")
    assert load_template(path).version != template.version
    path.write_text("Explain {item_to_explain}.")
    with pytest.raises(TemplateError, match=r"\{history\}"):
        load_template(path)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Great film.", "too_short"),
        ("good good good good good fine", "repetitive"),
        ("you will love it you will love it you will love it", "looping"),
        ("Be specific: Link features of the recommended movie to what you like.", "echo"),
        ("Star Wars (1977), The Matrix (1999)", "echo"),
        ("Back to the Future is a sci-fi comedy, like Star Wars and The Matrix.", None),
        ("Since you loved The Matrix, this is a good recommendation for you.", None),
    ],
)
def test_degenerate_answers(text, reason):
    prompt = format_teacher_prompt(DEFAULT_TEMPLATE, SAMPLE)
    assert degeneracy(text, prompt, DEFAULT_TEMPLATE_TEXT) == reason


def test_answers_are_cleaned_of_labels_quotes_and_extra_whitespace():
    assert clean_output('  Explanation:  "You will\nlove it."  ') == "You will love it."
    assert clean_output("answer: fine") == "fine"
    assert clean_output("   ") == ""


def test_every_teacher_fits_the_protocol():
    teachers: list[Teacher] = [GroundedTeacher()]
    with OpenAICompatibleTeacher("http://127.0.0.1:9", "m") as remote:
        teachers.append(remote)
        assert remote.url == "http://127.0.0.1:9/v1/chat/completions"
    assert [t.name for t in teachers] == ["grounded/2", "openai:m"]
    with OpenAICompatibleTeacher("http://h/v1", "m", mode="completions") as plain:
        assert plain.url == "http://h/v1/completions"


def test_a_wrong_number_of_results_is_an_error():
    requests = [TeacherRequest(SAMPLE, "p"), TeacherRequest(SAMPLE, "q")]
    check_results(requests, ["a", TeacherFailure("x")])
    with pytest.raises(TeacherResultCountError, match="1 results for 2 requests"):
        check_results(requests, ["a"])
