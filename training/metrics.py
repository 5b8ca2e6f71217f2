"""Text metrics for generated explanations: overlap, diversity and PEPLER's feature metrics.

ROUGE and BLEU come from the reference implementations (`rouge-score`, `sacrebleu`), so the
figures can be compared with other papers'. The project's own measures (USR, sentence
patterns, Distinct-n, PEPLER's FMR/FCR/DIV) share one tokenizer (`tokenize`): lower-case,
then words are maximal runs of letters and digits, with an apostrophe kept only *inside* a
word ("children's", "don't"); everything else separates words, so "sci-fi" is `sci fi`.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rouge_score import rouge_scorer
from sacrebleu.metrics.bleu import BLEU

from explain.slots import SLOT_PATTERN
from training.delexicalise import FEATURE_SYNONYMS

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased words; apostrophes survive only between letters or digits."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[k : k + n]) for k in range(len(tokens) - n + 1))


def _mean(values: Iterable[float]) -> float:
    data = list(values)
    return sum(data) / len(data) if data else 0.0


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def corpus_rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1, each averaged over the pairs (the paper reports F1), computed by
    Google's `rouge-score` (the reference implementation; its own tokenizer, no stemming)."""
    _check_pairs(predictions, references)
    if not predictions:
        return {"rouge_1": 0.0, "rouge_2": 0.0, "rouge_l": 0.0}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
    return {
        f"rouge_{key[5:].lower()}": sum(s[key].fmeasure for s in scores) / len(scores)
        for key in ("rouge1", "rouge2", "rougeL")
    }


def corpus_bleu(predictions: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` with one reference per prediction, computed by `sacrebleu`
    (tokenizer 13a, exponential smoothing), on a 0-1 scale."""
    _check_pairs(predictions, references)
    if not predictions:
        return 0.0
    metric = BLEU(max_ngram_order=max_n)
    return float(metric.corpus_score(list(predictions), [list(references)]).score) / 100.0


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def unique_sentence_ratio(texts: Sequence[str]) -> float:
    """USR (PEPLER): distinct explanations, after case and whitespace folding, over all."""
    return len({_normalise(t) for t in texts}) / len(texts) if texts else 0.0


def sentence_pattern(template: str) -> str:
    """A template's wording with case, spacing and punctuation folded; slots kept verbatim."""
    words: list[str] = []
    cursor = 0
    for match in SLOT_PATTERN.finditer(template):
        words += tokenize(template[cursor : match.start()])
        words.append(match.group(0))
        cursor = match.end()
    return " ".join(words + tokenize(template[cursor:]))


@dataclass(frozen=True)
class PatternDiversity:
    count: int  # distinct sentence patterns
    ratio: float  # count / templates


def distinct_patterns(templates: Sequence[str]) -> PatternDiversity:
    """Distinct delexicalised patterns. Filled slots make USR look diverse even when every
    explanation is the same sentence with other titles in it; this counts the sentences."""
    count = len({sentence_pattern(t) for t in templates})
    return PatternDiversity(count, count / len(templates) if templates else 0.0)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams over all n-grams in the corpus."""
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        grams.update(ngrams(tokenize(text), n))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def corpus_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    templates: Sequence[str] | None = None,
) -> dict[str, float]:
    """ROUGE, BLEU, USR and Distinct-1/2; the pattern counts too when `templates` are given."""
    scores = corpus_rouge(predictions, references)
    scores["bleu_1"] = corpus_bleu(predictions, references, max_n=1)
    scores["bleu_4"] = corpus_bleu(predictions, references, max_n=4)
    scores["usr"] = unique_sentence_ratio(predictions)
    scores["distinct_1"] = distinct_n(predictions, 1)
    scores["distinct_2"] = distinct_n(predictions, 2)
    if templates is not None:
        patterns = distinct_patterns(templates)
        scores["distinct_patterns"] = float(patterns.count)
        scores["pattern_ratio"] = patterns.ratio
    return scores


class FeatureLexicon:
    """Finds features (genres, categories) in text: case-insensitive, whole words, synonyms.

    Surfaces are matched longest first and a span is used once, so "science fiction" is one
    mention of sci-fi and "film noir" is not also a mention of a feature "Film".
    """

    def __init__(self, features: Iterable[str]) -> None:
        self.features = frozenset(f.strip().lower() for f in features if f.strip())
        surfaces: dict[str, str] = {}
        for feature in sorted(self.features):
            for surface in (feature, *FEATURE_SYNONYMS.get(feature, ())):
                surfaces.setdefault(surface.lower(), feature)
        self._feature_of = surfaces
        body = "|".join(re.escape(s) for s in sorted(surfaces, key=len, reverse=True))
        self._pattern = (
            re.compile(rf"(?<![\w])(?:{body})(?![\w])", re.IGNORECASE) if surfaces else None
        )

    def mentions(self, text: str) -> set[str]:
        """The (lower-cased) features `text` mentions."""
        if self._pattern is None:
            return set()
        found = self._pattern.finditer(text.replace("\u2019", "'"))
        return {self._feature_of[m.group(0).lower()] for m in found}


def feature_scores(
    texts: Sequence[str], item_features: Sequence[Iterable[str]], lexicon: FeatureLexicon
) -> dict[str, float]:
    """PEPLER's FMR, FCR and DIV with an item's genres/attributes as its features.

    FMR: share of explanations naming at least one feature of their own item. FCR: distinct
    features named anywhere over the lexicon's size. DIV: mean over all pairs i < j of
    |F_i ∩ F_j| (lower is more diverse), computed exactly as sum_f C(n_f, 2) / C(N, 2), with
    n_f the explanations naming f: O(N), so no pair sampling is needed on large corpora.
    """
    if len(texts) != len(item_features):
        raise ValueError(f"{len(texts)} texts but {len(item_features)} feature lists")
    found = [lexicon.mentions(t) for t in texts]
    matched = sum(
        1
        for named, own in zip(found, item_features, strict=True)
        if named & {f.lower() for f in own}
    )
    per_feature = Counter(f for named in found for f in named)
    pairs = len(texts) * (len(texts) - 1) // 2
    return {
        "fmr": matched / len(texts) if texts else 0.0,
        "fcr": len(per_feature) / len(lexicon.features) if lexicon.features else 0.0,
        "div": sum(n * (n - 1) // 2 for n in per_feature.values()) / pairs if pairs else 0.0,
    }


def bertscore_f1(
    predictions: Sequence[str],
    references: Sequence[str],
    model_path: str | Path | None,
    *,
    layer: int | None = None,
    batch_size: int = 32,
) -> float | None:
    """Mean BERTScore F1 (Zhang et al., 2020) from a local encoder, or None without one.

    Greedy matching of contextual token embeddings by cosine similarity, special tokens left
    out, no idf weighting and no baseline rescaling, so values are higher than the rescaled
    numbers of the `bert-score` package. `layer` picks a hidden state (None = the last);
    the paper's RoBERTa-large setting is layer 17. Nothing is downloaded: a missing
    directory, or one `transformers` cannot load, gives None and the report says "n/a".
    """
    _check_pairs(predictions, references)
    if model_path is None or not Path(model_path).is_dir() or not predictions:
        return None
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()
    except Exception as exc:  # any failure to load means "no local weights", never a crash
        log.warning("BERTScore disabled: cannot load %s (%s)", model_path, exc)
        return None

    def embed(texts: list[str]) -> list[torch.Tensor]:
        batch = tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            return_special_tokens_mask=True,
        )
        special = batch.pop("special_tokens_mask").bool()
        with torch.no_grad():
            out = model(**batch, output_hidden_states=layer is not None)
        states = out.last_hidden_state if layer is None else out.hidden_states[layer]
        states = torch.nn.functional.normalize(states.float(), dim=-1)
        keep = batch["attention_mask"].bool() & ~special
        return [states[k][keep[k]] for k in range(len(texts))]

    scores: list[float] = []
    for start in range(0, len(predictions), batch_size):
        preds = embed(list(predictions[start : start + batch_size]))
        refs = embed(list(references[start : start + batch_size]))
        for p, r in zip(preds, refs, strict=True):
            if len(p) == 0 or len(r) == 0:
                scores.append(0.0)
                continue
            sim = p @ r.T
            precision = float(sim.max(dim=1).values.mean())
            recall = float(sim.max(dim=0).values.mean())
            total = precision + recall
            scores.append(2 * precision * recall / total if total > 0 else 0.0)
    return _mean(scores)
