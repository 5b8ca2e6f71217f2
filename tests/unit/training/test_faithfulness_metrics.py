import pytest

from explain.evidence import compute_evidence
from explain.items import Item
from training.data.types import Sample, UserProfile
from training.faithfulness import TitleMatcher
from training.faithfulness_metrics import (
    ExplanationExample,
    evaluate_explanations,
    has_evidence_for,
    judge,
)
from training.metrics import FeatureLexicon

ET = Item("E.T. the Extra-Terrestrial (1982)", "1", {"genres": ["Children's", "Drama", "Sci-Fi"]})
STAR_WARS = Item("Star Wars (1977)", "2", {"genres": ["Action", "Adventure", "Sci-Fi"]})
THING = Item("Thing, The (1982)", "3", {"genres": ["Action", "Horror", "Sci-Fi"]})
BTTF = Item("Back to the Future (1985)", "4", {"genres": ["Comedy", "Sci-Fi"], "year": 1985})
OZ = Item("Wizard of Oz, The (1939)", "5", {"genres": ["Children's", "Drama", "Musical"]})
ANNIE = Item("Annie Hall (1977)", "6", {"genres": ["Comedy", "Romance"]})
HEAT = Item("Heat (1995)", "7", {"genres": ["Action", "Crime", "Thriller"]})
TRUE_ROMANCE = Item("True Romance (1993)", "8", {"genres": ["Action", "Crime", "Romance"]})
WESTERN = Item("Unforgiven (1992)", "9", {"genres": ["Western"]})
CATALOGUE = [ET, STAR_WARS, THING, BTTF, OZ, ANNIE, HEAT, TRUE_ROMANCE, WESTERN]
VOCABULARY = sorted({f for item in CATALOGUE for f in item.features})

MATCHER = TitleMatcher(CATALOGUE)
LEXICON = FeatureLexicon(VOCABULARY)

# 1: names a title outside the request; mentions the item; no grounding, no claims.
HALLUCINATING = ExplanationExample(
    (ET, STAR_WARS, THING), BTTF, "Back to the Future is based on The Wizard of Oz."
)
# 2: grounded only through Sci-Fi, which Star Wars shares; comedy is true of the item only.
# Claims: sci-fi, comedy -> 2 true of 2. No title.
SHARED_GENRE = ExplanationExample((STAR_WARS,), BTTF, "It is a science fiction comedy.")
# 3: "western" is true of neither; the 1980s are the item's, but Annie Hall is from 1977, so
# the decade does not ground it. Claims 2, true 1. Names the item.
UNGROUNDED = ExplanationExample((ANNIE,), BTTF, "Back to the Future is a western from the 1980s.")
# 4: cites a history title and the shared '80s (E.T. is from 1982). Claims 1, true 1.
CITES_HISTORY = ExplanationExample(
    (ET, STAR_WARS), BTTF, "Like E.T. the Extra-Terrestrial, it is from the '80s."
)


def test_each_check_on_crafted_requests():
    first = judge(HALLUCINATING, MATCHER, LEXICON)
    assert first.hallucinated == {"The Wizard of Oz"}
    assert first.mentions_item and not first.grounded and first.claims == 0

    second = judge(SHARED_GENRE, MATCHER, LEXICON)
    assert not second.hallucinated and second.grounded and not second.mentions_item
    assert second.features == {"sci-fi", "comedy"}
    assert (second.claims, second.true_claims) == (2, 2)
    # A true feature of the item alone is no link to this history (Heat is no comedy).
    item_only = judge(ExplanationExample((HEAT,), BTTF, "A comedy."), MATCHER, LEXICON)
    assert not item_only.grounded and (item_only.claims, item_only.true_claims) == (1, 1)

    third = judge(UNGROUNDED, MATCHER, LEXICON)
    assert not third.hallucinated and not third.grounded and third.mentions_item
    assert (third.claims, third.true_claims) == (2, 1)

    fourth = judge(CITES_HISTORY, MATCHER, LEXICON)
    assert not fourth.hallucinated and fourth.grounded and not fourth.mentions_item
    assert (fourth.claims, fourth.true_claims) == (1, 1)


def test_corpus_rates():
    examples = [HALLUCINATING, SHARED_GENRE, UNGROUNDED, CITES_HISTORY]
    scores = evaluate_explanations(examples, MATCHER, features=VOCABULARY)
    assert scores["num_test_samples"] == 4
    assert scores["title_hallucination_rate"] == pytest.approx(1 / 4)
    assert scores["hallucinated_titles"] == 1
    assert scores["history_grounding_rate"] == pytest.approx(2 / 4)  # examples 2 and 4
    assert scores["item_mention_rate"] == pytest.approx(2 / 4)  # examples 1 and 3
    # Claims pooled: 0 + 2 + 2 + 1 = 5, of which 0 + 2 + 1 + 1 = 4 are true.
    assert scores["attribute_precision"] == pytest.approx(4 / 5)
    assert scores["attribute_claims"] == 5
    # Own features named: only example 2 (comedy, sci-fi of Back to the Future).
    assert scores["fmr"] == pytest.approx(1 / 4)
    assert scores["fcr"] == pytest.approx(3 / len(VOCABULARY))  # sci-fi, comedy, western
    assert scores["aspect_match"] is None and scores["aspect_eligible"] == 0
    assert scores["unfilled_slot_rate"] == 0.0


def test_grounding_is_counted_over_requests_with_a_history():
    cold = ExplanationExample((), BTTF, "Back to the Future was picked for you.")
    scores = evaluate_explanations([SHARED_GENRE, UNGROUNDED, cold], MATCHER, features=VOCABULARY)
    assert scores["grounding_eligible"] == 2
    assert scores["history_grounding_rate"] == pytest.approx(1 / 2)
    assert scores["item_mention_rate"] == pytest.approx(2 / 3)  # the rest count every request


def test_empty_corpus_has_no_rates():
    scores = evaluate_explanations([], MATCHER)
    assert scores["num_test_samples"] == 0 and scores["history_grounding_rate"] is None


def test_a_sub_title_of_a_hallucination_is_not_a_citation():
    # "Star Wars" sits inside the hallucinated "Star Wars: Episode V ..." title.
    empire = Item("Star Wars: Episode V - The Empire Strikes Back (1980)", "10")
    matcher = TitleMatcher([*CATALOGUE, empire])
    text = "Fans of Star Wars: Episode V - The Empire Strikes Back love it."
    judged = judge(ExplanationExample((STAR_WARS,), BTTF, text), matcher, LEXICON)
    assert judged.hallucinated == {"Star Wars: Episode V - The Empire Strikes Back"}
    assert not judged.grounded


def test_titles_are_masked_before_claims_are_read():
    text = "Like True Romance, Back to the Future has action."
    judged = judge(ExplanationExample((TRUE_ROMANCE,), BTTF, text), MATCHER, LEXICON)
    # "Romance" inside the cited title is no claim; "action" is true of the history.
    assert judged.features == {"action"}
    assert (judged.claims, judged.true_claims) == (1, 1)
    assert judged.grounded and judged.mentions_item


def test_years_and_decades_are_claims():
    text = "Back to the Future is from 1985 (not 1999), a 1970s classic."
    judged = judge(ExplanationExample((HEAT,), BTTF, text), MATCHER, LEXICON)
    # 1985 is the item's year; 1999 and the 1970s are neither the item's nor Heat's (1995).
    assert (judged.claims, judged.true_claims) == (3, 1)
    assert not judged.grounded  # the item's decade is not shared by Heat
    # The same decade claim grounds it when a history item is from the '80s too.
    era_text = "A film from the ’80s, not the 50s."
    era_only = judge(ExplanationExample((ET,), BTTF, era_text), MATCHER, LEXICON)
    assert era_only.grounded and (era_only.claims, era_only.true_claims) == (2, 1)


def test_aspect_match_counts_only_eligible_examples():
    examples = [
        # era, eligible (E.T. and The Thing: two '80s films of two), written as era -> match
        ExplanationExample(
            (ET, THING),
            BTTF,
            "Back to the Future is from the 1980s.",
            "<item> is from the <dec>.",
            "era",
        ),
        # genre, eligible (both share Sci-Fi), written as "similar" -> no match
        ExplanationExample(
            (STAR_WARS, THING),
            BTTF,
            "Back to the Future is like Star Wars.",
            "<item> is like <s1>.",
            "genre",
        ),
        # genre, but Heat shares no genre with the item: not eligible, whatever it says
        ExplanationExample(
            (HEAT,), BTTF, "Back to the Future is a comedy.", "<item> is a <a1>.", "genre"
        ),
        # no profile: not counted at all
        ExplanationExample((STAR_WARS,), BTTF, "Back to the Future is a sci-fi film.", None),
        # text only (a real teacher): delexicalised to "<item> is like <s1>." -> similar
        ExplanationExample(
            (STAR_WARS,), BTTF, "Back to the Future is like Star Wars.", aspect="similar"
        ),
        # genre, with one sci-fi film in the history: one film is no pattern, not eligible
        ExplanationExample(
            (STAR_WARS,), BTTF, "Back to the Future is sci-fi.", "<item> is <g1>.", "genre"
        ),
    ]
    scores = evaluate_explanations(examples, MATCHER, features=VOCABULARY)
    assert scores["aspect_profiles"] == 5
    assert scores["aspect_eligible"] == 3
    assert scores["aspect_match"] == pytest.approx(2 / 3)
    # era 1/1, genre 0/1, similar 1/1: each preferred aspect weighs the same.
    assert scores["aspect_match_macro"] == pytest.approx(2 / 3)
    assert judge(examples[4], MATCHER, LEXICON).aspect == "similar"


def test_unfilled_slot_rate():
    examples = [
        # only one shared genre: <g2> cannot be filled
        ExplanationExample(
            (STAR_WARS, THING),
            BTTF,
            "Back to the Future is sci-fi and.",
            "<item> is <g1> and <g2>.",
        ),
        ExplanationExample(
            (STAR_WARS, THING), BTTF, "Back to the Future is sci-fi.", "<item> is <g1>."
        ),
        ExplanationExample((STAR_WARS,), BTTF, "Back to the Future.", unfilled=("<s2>",)),
        ExplanationExample((STAR_WARS,), BTTF, "Back to the Future is <g1>."),  # raw slot
    ]
    scores = evaluate_explanations(examples, MATCHER, features=VOCABULARY)
    assert scores["unfilled_slot_rate"] == pytest.approx(3 / 4)


def test_from_sample_takes_the_profile_aspect():
    sample = Sample("u1", (ET, STAR_WARS), BTTF, 0)
    profile = UserProfile("u1", ("Sci-Fi",), (1980,), "era")
    example = ExplanationExample.from_sample(sample, "text", profile=profile)
    assert example.aspect == "era" and example.history == (ET, STAR_WARS)
    assert example.recent_first == [STAR_WARS, ET]


def test_evidence_follows_the_claim_rules():
    history = (STAR_WARS, THING, ET, ANNIE)  # 3 of 4 share Sci-Fi; 2 of 4 are from the '80s
    ev = compute_evidence(list(reversed(history)), BTTF)
    assert has_evidence_for("genre", ev) and ev.shared[0].level == "strong"
    assert has_evidence_for("era", ev) and ev.era == "basic"  # half: not "clearly"
    assert has_evidence_for("similar", ev)
    lone = compute_evidence([HEAT, WESTERN], BTTF)
    assert not any(has_evidence_for(a, lone) for a in ("genre", "era", "similar"))
