"""The teacher's prompt token budget: a prompt that would not fit the teacher's context loses
history, oldest first, and nothing else.

A teacher reads `max_context` tokens at most and writes `max_new_tokens` after them, so a
prompt may hold `max_context - max_new_tokens`. Cutting the tokenised prompt (as tokenizers
do with `truncation=True`) would cut the end of the prompt: the recommended item and the
instructions. Here the template is filled with the `k` most recent history items, for the
largest `k` whose prompt fits; the task, the instructions and the recommended item are
always whole. A prompt that does not fit even with no history is refused (`None`).

Token counts come from the teacher's own tokenizer: a `tokenizer.json` file (`tokenizers`,
no hub), or the HF teacher's tokenizer in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from training.data.types import Sample
from training.prompts import PromptTemplate, format_teacher_prompt

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class PromptBudget:
    count: TokenCounter  # tokens of a prompt as the teacher encodes it (specials included)
    max_prompt_tokens: int

    def __post_init__(self) -> None:
        if self.max_prompt_tokens < 1:
            raise ValueError("a prompt budget needs at least one token")

    @classmethod
    def for_context(
        cls, count: TokenCounter, *, max_context: int, max_new_tokens: int
    ) -> PromptBudget:
        return cls(count, max_context - max_new_tokens)

    @classmethod
    def from_tokenizer_file(
        cls, path: Path, *, max_context: int, max_new_tokens: int
    ) -> PromptBudget:
        """From a `tokenizer.json` (a file or the folder holding one) in `tokenizers` format."""
        from tokenizers import Tokenizer

        file = path / "tokenizer.json" if path.is_dir() else path
        tokenizer = Tokenizer.from_file(str(file))
        tokenizer.no_truncation()

        def count(text: str) -> int:
            return len(tokenizer.encode(text).ids)

        return cls.for_context(count, max_context=max_context, max_new_tokens=max_new_tokens)


@dataclass(frozen=True)
class FittedPrompt:
    prompt: str
    sample: Sample  # the sample as the teacher sees it: its history possibly shortened
    tokens: int


def fit_prompt(
    template: PromptTemplate, sample: Sample, budget: PromptBudget | None
) -> FittedPrompt | None:
    """The prompt with as much recent history as the budget holds; None if not even none.

    Prompt length grows with the number of history items listed, so the largest fitting
    count is found by bisection: about log2(50) = 6 tokenisations for a long history, one
    when the whole prompt fits.
    """
    full = format_teacher_prompt(template, sample)
    if budget is None:
        return FittedPrompt(full, sample, 0)
    tokens = budget.count(full)
    if tokens <= budget.max_prompt_tokens:
        return FittedPrompt(full, sample, tokens)

    def attempt(keep: int) -> FittedPrompt:
        cut = replace(sample, history=sample.history[len(sample.history) - keep :])
        prompt = format_teacher_prompt(template, cut)
        return FittedPrompt(prompt, cut, budget.count(prompt))

    low, high = 0, len(sample.history) - 1  # `high` items may fit; the full history does not
    best = attempt(0)
    if best.tokens > budget.max_prompt_tokens:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        candidate = attempt(middle)
        if candidate.tokens <= budget.max_prompt_tokens:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best
