"""The teacher's prompt: the paper's faithfulness-constrained template (section 4.2).

The default template is the paper's, word for word. A custom template is a text file with
the same two placeholders; its version is a hash of its text, so two datasets distilled
with different prompts can never claim the same template id.

How a sample fills the placeholders (a choice the paper leaves open):

- `{history}`: the history titles in their display form ("The Matrix (1999)"), oldest
  first and most recent last (the order in which they were watched), comma-separated.
  Only titles are listed, as in the paper: the teacher's world knowledge supplies the rest,
  and a 50-item history stays a few hundred tokens long.
- `{item_to_explain}`: the item's display title, then its genres in parentheses when the
  catalogue has them ("Back to the Future (1985) (comedy, sci-fi)"). The prompt asks the
  teacher to link the item's features to the history; naming them keeps a teacher that does
  not know the item from guessing its genres.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from explain import slots
from explain.items import Item
from training.data.types import Sample

TEMPLATE_NAME = "oracle-faithful"
TEMPLATE_VERSION = "1"
HISTORY_PLACEHOLDER = "{history}"
ITEM_PLACEHOLDER = "{item_to_explain}"
_PLACEHOLDERS = re.compile(re.escape(HISTORY_PLACEHOLDER) + "|" + re.escape(ITEM_PLACEHOLDER))

# Section 4.2 of the paper, verbatim (the paper's markdown escapes the underscore).
DEFAULT_TEMPLATE_TEXT = """\
Generate a short, personalized, and persuasive explanation for the following recommendation. \
Context:

- User's movie viewing history: {history}
- Recommended movie: {item_to_explain}

Task: Explain WHY this is a good recommendation based on the user's history.

- Be specific: Link features of the recommended movie (e.g., genre, director, actors, theme) \
to patterns in the history.
- Be natural: Sound like a genuine recommendation from a friend.
- Be concise: Ideally one or two sentences.

- Start the explanation directly. Explanation:"""


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    text: str

    @property
    def template_id(self) -> str:
        """`<name>/<version>`: what every distilled line records."""
        return f"{self.name}/{self.version}"

    @classmethod
    def from_text(cls, text: str, *, name: str = "custom") -> PromptTemplate:
        """A template from its text; the paper's own text keeps the default name and version."""
        validate_template(text)
        for known in (DEFAULT_TEMPLATE, BUSINESS_TEMPLATE):
            if text == known.text:
                return known
        return cls(name, _text_version(text), text)


DEFAULT_TEMPLATE = PromptTemplate(TEMPLATE_NAME, TEMPLATE_VERSION, DEFAULT_TEMPLATE_TEXT)

# The paper gives its prompt for movies only; for Yelp the same constraints are worded for
# businesses (what a visitor links: category, cuisine, atmosphere, location).
BUSINESS_TEMPLATE_TEXT = """\
Generate a short, personalized, and persuasive explanation for the following recommendation. \
Context:

- Businesses the user visited and reviewed: {history}
- Recommended business: {item_to_explain}

Task: Explain WHY this is a good recommendation based on the user's history.

- Be specific: Link features of the recommended business (e.g., category, cuisine, \
atmosphere, location) to patterns in the history.
- Be natural: Sound like a genuine recommendation from a friend.
- Be concise: Ideally one or two sentences.

- Start the explanation directly. Explanation:"""

BUSINESS_TEMPLATE = PromptTemplate(
    "oracle-faithful-business", TEMPLATE_VERSION, BUSINESS_TEMPLATE_TEXT
)
# The default prompt of each dataset (`--prompt-file` replaces it).
DATASET_TEMPLATES = {
    "synthetic": DEFAULT_TEMPLATE,
    "movielens": DEFAULT_TEMPLATE,
    "yelp": BUSINESS_TEMPLATE,
}


def default_template(dataset: str) -> PromptTemplate:
    """The dataset's own prompt: movies (the paper's, verbatim) or businesses."""
    try:
        return DATASET_TEMPLATES[dataset]
    except KeyError:
        raise TemplateError(f"no default prompt for dataset {dataset!r}") from None


def _text_version(text: str) -> str:
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def validate_template(text: str) -> None:
    missing = [p for p in (HISTORY_PLACEHOLDER, ITEM_PLACEHOLDER) if p not in text]
    if missing:
        raise TemplateError(f"prompt template lacks the placeholder(s) {', '.join(missing)}")


def load_template(path: Path, *, name: str | None = None) -> PromptTemplate:
    """A custom template from a UTF-8 file; named after the file unless `name` is given."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read prompt template {path}: {exc}") from exc
    # Editors add a final newline; the template is the text before it.
    text = text.removesuffix("\n")
    try:
        validate_template(text)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from exc
    return PromptTemplate.from_text(text, name=name or path.stem)


def _titled(item: Item) -> str:
    year = item.year
    title = item.display_title
    return f"{title} ({year})" if year is not None and str(year) not in title else title


def format_history(history: Sequence[Item]) -> str:
    """Display titles, most recent last, comma-separated."""
    return ", ".join(_titled(past) for past in history)


def format_item(item: Item) -> str:
    features = ", ".join(slots.feature_surface(f) for f in item.features)
    return f"{_titled(item)} ({features})" if features else _titled(item)


def format_teacher_prompt(template: PromptTemplate | str, sample: Sample) -> str:
    """The prompt `X_prompt = format(T_prompt, H_u, i_rec)` of Algorithm 1."""
    text = template.text if isinstance(template, PromptTemplate) else template
    values = {
        HISTORY_PLACEHOLDER: format_history(sample.history),
        ITEM_PLACEHOLDER: format_item(sample.item),
    }
    # One pass, not str.format: a custom template may hold other braces, and a title that
    # happens to contain a placeholder must not be substituted again.
    return _PLACEHOLDERS.sub(lambda m: values[m.group(0)], text)
