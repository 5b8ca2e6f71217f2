"""Text metrics for generated explanations: overlap, diversity and PEPLER's feature metrics.

Everything here is a pure function over lists of strings, implemented in plain Python so the
numbers do not depend on which metric package (rouge-score, nltk, sacrebleu) is installed.

One tokenizer serves every metric (`tokenize`): lower-case, then words are maximal runs of
letters and digits, with an apostrophe kept only *inside* a word ("children's", "don't");
everything else separates words, so "sci-fi" is `sci fi` and "'80s" is `80s`.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model_store.slots import FEATURE_SYNONYMS, SLOT_PATTERN

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# Chen & Cherry (2014) smoothing method 1: a zero n-gram match count becomes EPSILON, so one
# missing 4-gram does not zero a whole corpus's BLEU-4 (nltk's `method1` uses the same 0.1).
BLEU_EPSILON = 0.1


def tokenize(text: str) -> list[str]:
    """Lower-cased words; apostrophes survive only between letters or digits."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[k : k + n]) for k in range(len(tokens) - n + 1))


def _f1(overlap: float, predicted: int, reference: int) -> float:
    if overlap == 0 or predicted == 0 or reference == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(prediction: str, reference: str, n: int) -> float:
    """ROUGE-N F1 of one pair: clipped n-gram overlap against both lengths."""
    pred, ref = ngrams(tokenize(prediction), n), ngrams(tokenize(reference), n)
    overlap = sum((pred & ref).values())
    return _f1(overlap, sum(pred.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) of one pair: LCS length over both lengths."""
    pred, ref = tokenize(prediction), tokenize(reference)
    return _f1(lcs_length(pred, ref), len(pred), len(ref))


def _mean(values: Iterable[float]) -> float:
    data = list(values)
    return sum(data) / len(data) if data else 0.0


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def corpus_rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1, each averaged over the pairs (the paper reports F1)."""
    _check_pairs(predictions, references)
    pairs = list(zip(predictions, references, strict=True))
    return {
        "rouge_1": _mean(rouge_n(p, r, 1) for p, r in pairs),
        "rouge_2": _mean(rouge_n(p, r, 2) for p, r in pairs),
        "rouge_l": _mean(rouge_l(p, r) for p, r in pairs),
    }


def corpus_bleu(predictions: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` with one reference per prediction (Papineni et al., 2002).

    Clipped n-gram counts and prediction n-gram totals are summed over the corpus first, the
    precisions combined by an unweighted geometric mean, times the brevity penalty
    exp(1 - r/c) when the corpus of predictions is shorter than the references. A zero match
    count for n > 1 is smoothed to `BLEU_EPSILON` (Chen & Cherry method 1); no unigram
    match at all gives 0.
    """
    _check_pairs(predictions, references)
    matches, totals = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for prediction, reference in zip(predictions, references, strict=True):
        pred, ref = tokenize(prediction), tokenize(reference)
        pred_len, ref_len = pred_len + len(pred), ref_len + len(ref)
        for n in range(1, max_n + 1):
            pred_grams = ngrams(pred, n)
            matches[n - 1] += sum((pred_grams & ngrams(ref, n)).values())
            totals[n - 1] += sum(pred_grams.values())
    if pred_len == 0 or matches[0] == 0:
        return 0.0
    log_precision = sum(
        math.log((m if m > 0 else BLEU_EPSILON) / max(t, 1))
        for m, t in zip(matches, totals, strict=True)
    )
    brevity = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(log_precision / max_n)


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
