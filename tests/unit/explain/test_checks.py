import pytest

from explain import checks as quality


@pytest.mark.parametrize(
    ("template", "defect"),
    [
        ("<item> captures the <decs> feel that runs through your watching.", None),
        ("<item> is very much in the same vein as <s1> and <s2>.", None),
        ("Like <s1> <s2>, <item> is a <g1> film.", None),  # two slots in a row are not a stutter
        # The space before a banned slot was written, the slot was not.
        ("<item> captures the  feel right ways.", quality.DANGLING_SLOT),
        ("<item> is in the same vein as  and <item>.", quality.DANGLING_SLOT),
        ("You have a clear taste for the <item> is the same same vein.", quality.STUTTER),
        ("<item>, a open your your taste for your <g1> film.", quality.STUTTER),
        ("<item> is great and great and great and great.", quality.LOOPING),
    ],
)
def test_template_defects(template, defect):
    assert quality.template_defect(template) == defect


def test_looping_needs_a_phrase_three_times():
    words = quality.words_of("a b c a b c")
    assert not quality.is_looping(words)
    assert quality.is_looping([*words, "a", "b", "c"])
    assert not quality.is_looping(["a", "b"])


def test_words_keep_slots_whole():
    assert quality.words_of("Like <s1>, it's <g1>!") == ["like", "<s1>", "it's", "<g1>"]


def test_a_word_repeated_across_a_sentence_end_is_not_a_stutter():
    assert not quality.has_stutter("<item> is an easy pick for you. You will like it.")
    assert not quality.has_stutter("<s1> <s1> and then the theme")
    assert quality.has_stutter("the the theme")
