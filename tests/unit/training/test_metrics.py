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


def test_rouge_is_the_reference_implementation_on_two_short_sentences():
    # Unigrams: 5 of 6 shared -> F = 5/6; bigrams 3 of 5 -> 3/5; LCS 5 of 6 -> 5/6.
    scores = metrics.corpus_rouge([PRED], [REF])
    assert scores == pytest.approx({"rouge_1": 5 / 6, "rouge_2": 3 / 5, "rouge_l": 5 / 6})
    # ROUGE-L follows order where ROUGE-1 does not.
    shuffled = metrics.corpus_rouge(["on the mat the cat sat"], [REF])
    assert shuffled["rouge_1"] == pytest.approx(1.0) and shuffled["rouge_l"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.corpus_rouge([PRED], [])


def test_bleu_is_sacrebleu():
    exact = metrics.corpus_bleu([REF, "a dog ran far away"], [REF, "a dog ran far away"])
    assert exact == pytest.approx(1.0)
    assert metrics.corpus_bleu([PRED], [REF], max_n=1) == pytest.approx(5 / 6)
    # Brevity penalty: c = 2, r = 6 -> exp(1 - 6/2).
    assert metrics.corpus_bleu(["the cat"], [REF], max_n=1) == pytest.approx(math.exp(-2))
    # Corpus pooling, not a mean of sentence scores: 3 + 0 matches over 3 + 2 unigrams.
    assert metrics.corpus_bleu(
        ["the cat sat", "a dog"], ["the cat sat", "the mat"], max_n=1
    ) == pytest.approx(0.6)


# A fixed set, scored once by the project's former hand-written ROUGE/BLEU (its own
# tokenizer: "sci-fi" -> "sci fi", apostrophes kept inside words; Chen & Cherry method-1
# smoothing) and by the reference libraries that replaced it. The old figures are kept here
# so that anyone comparing reports across the change knows how far they moved.
FIXED_SET = [
    (
        "Back to the Future is a sci-fi film, just like other titles you have enjoyed.",
        "Back to the Future is a sci-fi film, and you have seen others of that kind.",
    ),
    (
        "If the 1980s are your era, Back to the Future is one to add to the list.",
        "Since you keep returning to the 1980s, Back to the Future is a natural pick.",
    ),
    (
        "Because you watched The Thing and Star Wars, you are likely to enjoy Aliens.",
        "Aliens has a lot in common with The Thing, which you have watched.",
    ),
    (
        "Heat is a fresh pick that could widen your taste.",
        "Heat is a fresh pick that could widen your taste.",
    ),
    (
        "Your taste for children's films makes Toy Story a natural next watch.",
        "Toy Story brings the animation you clearly love. The film should feel familiar in the "
        "best way.",
    ),
]
OLD_HAND_WRITTEN = {
    "rouge_1": 0.5350,
    "rouge_2": 0.4269,
    "rouge_l": 0.4929,
    "bleu_1": 0.4995,
    "bleu_4": 0.3505,
}
NEW_REFERENCE = {
    "rouge_1": 0.5341,
    "rouge_2": 0.4264,
    "rouge_l": 0.4919,
    "bleu_1": 0.5368,
    "bleu_4": 0.3515,
}


def test_old_and_new_overlap_figures_on_a_fixed_set():
    predictions = [p for p, _ in FIXED_SET]
    references = [r for _, r in FIXED_SET]
    got = metrics.corpus_rouge(predictions, references)
    got["bleu_1"] = metrics.corpus_bleu(predictions, references, max_n=1)
    got["bleu_4"] = metrics.corpus_bleu(predictions, references)
    assert got == pytest.approx(NEW_REFERENCE, abs=5e-5)
    # The change moved ROUGE by under 0.002 and BLEU-4 by 0.001; BLEU-1 by 0.04, because
    # sacrebleu counts punctuation as tokens.
    for key, old in OLD_HAND_WRITTEN.items():
        assert abs(got[key] - old) < (0.05 if key == "bleu_1" else 0.002), key


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
