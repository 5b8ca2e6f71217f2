"""Judging a teacher's answer: the cleaning and the degeneracy checks distillation applies.

A large teacher fails in recognisable ways: it answers with a fragment, loops on a word or
a phrase, or copies back part of its prompt. Such an answer is not an explanation, and a
student trained on it learns the failure, so distillation drops it (and records why).
"""

from __future__ import annotations

import re
from collections import Counter

from explain.checks import is_looping
from training.prompts import HISTORY_PLACEHOLDER, ITEM_PLACEHOLDER

MIN_WORDS = 4
ECHO_NGRAM = 6  # a run of this many words copied from the template's instructions is an echo
_WORD = re.compile(r"[\w'’-]+")
_LABEL = re.compile(r"^\s*(?:explanation|answer)\s*:\s*", re.IGNORECASE)


def clean_output(text: str) -> str:
    """Whitespace collapsed, an "Explanation:" label and wrapping quotes removed."""
    text = _LABEL.sub("", " ".join(text.split()))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def degeneracy(text: str, prompt: str, template: str) -> str | None:
    """Why `text` is not a usable explanation, or None.

    - `too_short`: fewer than 4 words;
    - `repetitive`: one word is more than half of all words;
    - `looping`: a 3-word phrase occurs three times or more;
    - `echo`: the text is a piece of the prompt, or copies 6 words in a row from the
      template's instructions.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < MIN_WORDS:
        return "too_short"
    if Counter(words).most_common(1)[0][1] * 2 > len(words):
        return "repetitive"
    if is_looping(words):
        return "looping"
    if " ".join(words) in " ".join(w.lower() for w in _WORD.findall(prompt)):
        return "echo"
    instructions = template.replace(HISTORY_PLACEHOLDER, " | ").replace(ITEM_PLACEHOLDER, " | ")
    grams = set()
    for part in instructions.split("|"):
        part_words = [w.lower() for w in _WORD.findall(part)]
        grams |= {tuple(part_words[k : k + ECHO_NGRAM]) for k in range(len(part_words))}
    if any(tuple(words[k : k + ECHO_NGRAM]) in grams for k in range(len(words) - ECHO_NGRAM + 1)):
        return "echo"
    return None
