"""The teacher's prompt budget, with a real tokenizer trained here (a Unigram model, as T5's)."""

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from explain.items import Item
from training.data.types import Sample
from training.distill import distill, dropped_path, read_distilled
from training.prompt_budget import PromptBudget, fit_prompt
from training.prompts import (
    BUSINESS_TEMPLATE,
    DEFAULT_TEMPLATE,
    TemplateError,
    default_template,
    format_teacher_prompt,
)
from training.teachers import TeacherRequest

TITLES = [f"The Long Film Number {k} ({1950 + k})" for k in range(40)]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    """A SentencePiece-style Unigram tokenizer trained on prompts, saved as tokenizer.json."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    corpus = [DEFAULT_TEMPLATE.text, BUSINESS_TEMPLATE.text, *TITLES] * 5
    tok.train_from_iterator(corpus, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def sample(n_history):
    history = tuple(
        Item(t, str(k), {"genres": ["Drama"]}) for k, t in enumerate(TITLES[:n_history])
    )
    return Sample("u1", history, Item("Picked Film (1999)", "p", {"genres": ["Drama"]}), 1)


def count_with(path):
    tok = Tokenizer.from_file(str(path))
    return lambda text: len(tok.encode(text).ids)


def test_a_prompt_that_fits_is_left_whole(tokenizer_file):
    budget = PromptBudget.from_tokenizer_file(tokenizer_file, max_context=4096, max_new_tokens=64)
    fitted = fit_prompt(DEFAULT_TEMPLATE, sample(30), budget)
    assert fitted is not None and fitted.prompt == format_teacher_prompt(
        DEFAULT_TEMPLATE, sample(30)
    )
    assert fitted.sample.history == sample(30).history
    assert fitted.tokens == count_with(tokenizer_file)(fitted.prompt)


def test_history_loses_its_oldest_items_and_nothing_else(tokenizer_file):
    count = count_with(tokenizer_file)
    full = format_teacher_prompt(DEFAULT_TEMPLATE, sample(30))
    bare = format_teacher_prompt(DEFAULT_TEMPLATE, sample(0))
    limit = (count(full) + count(bare)) // 2
    budget = PromptBudget.from_tokenizer_file(
        tokenizer_file.parent, max_context=limit + 10, max_new_tokens=10
    )
    assert budget.max_prompt_tokens == limit
    fitted = fit_prompt(DEFAULT_TEMPLATE, sample(30), budget)
    assert fitted is not None and fitted.tokens == count(fitted.prompt) <= limit
    kept = fitted.sample.history
    assert 0 < len(kept) < 30 and kept == sample(30).history[-len(kept) :]  # the most recent
    # The largest history that fits: one more item would not.
    one_more = Sample("u1", sample(30).history[-len(kept) - 1 :], sample(30).item, 1)
    assert count(format_teacher_prompt(DEFAULT_TEMPLATE, one_more)) > limit
    # The task, the instructions and the recommended item are whole.
    assert "Recommended movie: Picked Film (1999) (drama)" in fitted.prompt
    assert fitted.prompt.endswith("Start the explanation directly. Explanation:")
    assert TITLES[29] in fitted.prompt and TITLES[0] not in fitted.prompt


def test_a_prompt_that_cannot_fit_even_bare_is_refused(tokenizer_file):
    count = count_with(tokenizer_file)
    bare = count(format_teacher_prompt(DEFAULT_TEMPLATE, sample(0)))
    assert fit_prompt(DEFAULT_TEMPLATE, sample(5), PromptBudget(count, bare - 1)) is None
    fitted = fit_prompt(DEFAULT_TEMPLATE, sample(5), PromptBudget(count, bare))
    assert fitted is not None and fitted.sample.history == ()


class Recording:
    name = "recording"

    def __init__(self):
        self.requests: list[TeacherRequest] = []

    def explain(self, requests):
        self.requests.extend(requests)
        return [f"{r.sample.item.title} is a fine pick for you." for r in requests]


def test_distill_asks_with_the_fitted_prompt_and_drops_what_cannot_fit(tokenizer_file, tmp_path):
    count = count_with(tokenizer_file)
    bare = count(format_teacher_prompt(DEFAULT_TEMPLATE, sample(0)))
    budget = PromptBudget(count, bare + 60)
    samples = [sample(20), Sample("u2", (), Item("A " * 40 + "(1990)", "x"), 2)]
    teacher = Recording()
    out = tmp_path / "d.jsonl"
    stats = distill(samples, teacher, out, prompt_budget=budget, progress=False)
    assert stats.kept == 1 and stats.too_long == 1
    (asked,) = teacher.requests
    assert count(asked.prompt) <= bare + 60 and 0 < len(asked.sample.history) < 20
    assert '"reason": "too_long"' in dropped_path(out).read_text()
    assert read_distilled(out)[0].target == "<item> is a fine pick for you."


def test_each_dataset_has_its_own_default_prompt():
    assert default_template("movielens") is DEFAULT_TEMPLATE
    assert default_template("yelp") is BUSINESS_TEMPLATE
    assert "Recommended business:" in BUSINESS_TEMPLATE.text
    assert BUSINESS_TEMPLATE.template_id == "oracle-faithful-business/1"
    with pytest.raises(TemplateError):
        default_template("books")
