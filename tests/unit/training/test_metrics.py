import math

import pytest

from training import metrics
from training.metrics import FeatureLexicon

REF = "the cat sat on the mat"
PRED = "the cat is on the mat"


def test_tokenizer_lowercases_splits_on_punctuation_and_keeps_inner_apostrophes():
    assert metrics.tokenize("Children's SCI-FI, '80s don’t!") == [
        "children's",
        "sci",
        "fi",
        "80s",
        "don't",
    ]


def test_rouge_on_two_short_sentences():
    # Unigrams: 5 of 6 shared (the x2, cat, on, mat) -> P = R = F = 5/6.
    assert metrics.rouge_n(PRED, REF, 1) == pytest.approx(5 / 6)
    # Bigrams: ref {the cat, cat sat, sat on, on the, the mat}, pred {the cat, cat is, is on,
    # on the, the mat}: 3 of 5 shared -> F = 3/5.
    assert metrics.rouge_n(PRED, REF, 2) == pytest.approx(3 / 5)
    # LCS "the cat on the mat" = 5 -> P = R = F = 5/6.
    assert metrics.rouge_l(PRED, REF) == pytest.approx(5 / 6)


def test_rouge_l_follows_order_where_rouge_1_does_not():
    shuffled = "on the mat the cat sat"
    assert metrics.rouge_n(shuffled, REF, 1) == pytest.approx(1.0)
    # Bigrams shared: on the, the mat, the cat, cat sat = 4 of 5.
    assert metrics.rouge_n(shuffled, REF, 2) == pytest.approx(4 / 5)
    # LCS is "the cat sat" (or "on the mat") = 3 -> 3/6.
    assert metrics.rouge_l(shuffled, REF) == pytest.approx(0.5)


def test_rouge_f1_with_unequal_lengths_and_corpus_mean():
    # pred "the cat" vs REF: overlap 2, P = 2/2, R = 2/6 -> F = 2*1*(1/3)/(4/3) = 0.5.
    assert metrics.rouge_n("the cat", REF, 1) == pytest.approx(0.5)
    scores = metrics.corpus_rouge([PRED, "the cat"], [REF, REF])
    assert scores["rouge_1"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert metrics.rouge_n("", REF, 1) == 0.0
    with pytest.raises(ValueError):
        metrics.corpus_rouge([PRED], [])


def test_bleu_exact_match_is_one():
    assert metrics.corpus_bleu([REF, "a dog ran far away"], [REF, "a dog ran far away"]) == 1.0
    assert metrics.corpus_bleu([REF], [REF], max_n=1) == 1.0


def test_bleu_on_a_partial_match_with_epsilon_smoothing():
    # p1 = 5/6, p2 = 3/5, p3 = 1/4 ("on the mat"), p4 = 0/3 -> 0.1/3 (method 1); BP = 1.
    expected = (5 / 6 * 3 / 5 * 1 / 4 * (0.1 / 3)) ** 0.25
    assert metrics.corpus_bleu([PRED], [REF]) == pytest.approx(expected)  # ~0.2541
    assert metrics.corpus_bleu([PRED], [REF], max_n=1) == pytest.approx(5 / 6)
    assert metrics.corpus_bleu(["dog"], [REF]) == 0.0  # no unigram match at all


def test_bleu_brevity_penalty_and_corpus_pooling():
    # c = 2, r = 6 -> BP = exp(1 - 6/2) = e^-2; p1 = 1.
    assert metrics.corpus_bleu(["the cat"], [REF], max_n=1) == pytest.approx(math.exp(-2))
    # Pooled: 3 + 0 matches over 3 + 2 unigrams = 0.6 (a mean of sentence scores gives 0.5).
    assert metrics.corpus_bleu(
        ["the cat sat", "a dog"], ["the cat sat", "the mat"], max_n=1
    ) == pytest.approx(0.6)


def test_usr_and_distinct_patterns():
    filled = ["Alien is a horror film.", "Heat is a crime  film!", "Heat is like Alien."]
    templates = ["<item> is a <g1> film.", "<item>  is a <g1> Film!", "<item> is like <s1>."]
    # Every filled sentence is unique, but only two sentence patterns exist.
    assert metrics.unique_sentence_ratio(filled) == 1.0
    assert metrics.unique_sentence_ratio(["A b", "a  B ", "c"]) == pytest.approx(2 / 3)
    patterns = metrics.distinct_patterns(templates)
    assert patterns.count == 2
    assert patterns.ratio == pytest.approx(2 / 3)
    assert metrics.sentence_pattern("<item>  is a <g1> Film!") == "<item> is a <g1> film"
    assert metrics.unique_sentence_ratio([]) == 0.0


def test_distinct_n():
    # Unigrams a, b, a, b, c: 3 distinct of 5. Bigrams "a b", "b a", "b c": all distinct.
    assert metrics.distinct_n(["a b a", "b c"], 1) == pytest.approx(0.6)
    assert metrics.distinct_n(["a b a", "b c"], 2) == pytest.approx(1.0)
    assert metrics.distinct_n(["x"], 2) == 0.0


def test_corpus_scores_bundle():
    scores = metrics.corpus_scores([PRED, REF], [REF, REF], templates=["<item> a", "<item> a"])
    assert scores["rouge_1"] == pytest.approx((5 / 6 + 1) / 2)
    assert scores["usr"] == 1.0
    assert scores["distinct_patterns"] == 1.0 and scores["pattern_ratio"] == 0.5
    assert {"rouge_2", "rouge_l", "bleu_1", "bleu_4", "distinct_1", "distinct_2"} <= set(scores)
    assert "distinct_patterns" not in metrics.corpus_scores([PRED], [REF])


def test_feature_lexicon_matches_whole_words_and_synonyms():
    lexicon = FeatureLexicon(["Comedy", "Sci-Fi", "Drama", "Film-Noir", "Children's"])
    text = "A science fiction comedy, dramatic, a film noir for children’s nights."
    assert lexicon.mentions(text) == {"sci-fi", "comedy", "film-noir", "children's"}
    assert lexicon.mentions("comedic scifi") == {"sci-fi"}
    assert FeatureLexicon([]).mentions("comedy") == set()


def test_fmr_fcr_div_on_three_explanations():
    lexicon = FeatureLexicon(["Comedy", "Sci-Fi", "Drama", "Horror"])
    texts = ["A science fiction comedy.", "More sci-fi for you.", "A dramatic film."]
    own = [["Comedy", "Sci-Fi"], ["Drama"], ["Horror"]]
    scores = metrics.feature_scores(texts, own, lexicon)
    # Named: {sci-fi, comedy}, {sci-fi}, {} ("dramatic" is not "drama").
    assert scores["fmr"] == pytest.approx(1 / 3)  # only the first names its own item's feature
    assert scores["fcr"] == pytest.approx(2 / 4)  # sci-fi and comedy of 4 features
    # Pairs: (1,2) share sci-fi = 1, (1,3) = 0, (2,3) = 0 -> 1/3.
    assert scores["div"] == pytest.approx(1 / 3)
    same = metrics.feature_scores(["sci-fi drama"] * 3, [["Drama"]] * 3, lexicon)
    assert same["div"] == pytest.approx(2.0) and same["fmr"] == 1.0


def test_bertscore_is_none_without_local_weights(tmp_path):
    assert metrics.bertscore_f1([PRED], [REF], None) is None
    assert metrics.bertscore_f1([PRED], [REF], tmp_path / "missing") is None
    assert metrics.bertscore_f1([PRED], [REF], tmp_path) is None  # a directory, no model


def test_bertscore_with_a_tiny_local_encoder(tmp_path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "the",
        "cat",
        "sat",
        "on",
        "mat",
        "a",
        "dog",
        "ran",
    ]
    vocab = {w: k for k, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    ).save_pretrained(tmp_path)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.BertModel(config).save_pretrained(tmp_path)

    same = metrics.bertscore_f1([REF, "a dog ran"], [REF, "a dog ran"], tmp_path)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert metrics.bertscore_f1([REF], [REF], tmp_path, layer=0) == pytest.approx(1.0, abs=1e-5)
    different = metrics.bertscore_f1(["a dog ran"], ["the cat sat"], tmp_path)
    assert different is not None and different < 0.99
