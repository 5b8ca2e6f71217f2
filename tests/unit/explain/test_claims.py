from explain.claims import ClaimUse, claims_in, era_level, genre_level, novel


def test_support_levels_need_both_a_count_and_a_share():
    assert genre_level(1, 2) == "none"  # one film is not a pattern
    assert genre_level(2, 20) == "basic"  # 2 films, 10 %
    assert genre_level(2, 21) == "none"
    assert genre_level(3, 7) == "strong"  # 3 films, 43 %
    assert genre_level(3, 8) == "basic"  # 37.5 %: not "clearly"
    assert era_level(1, 10) == "none"  # one 1980s film in ten
    assert era_level(5, 10) == "basic"
    assert era_level(3, 5) == "strong"
    assert era_level(2, 0) == "none"


def test_novelty_needs_a_history_that_really_lacks_the_genres():
    assert novel(0, 0, 0, item_has_genres=False)  # no history: anything is new
    assert novel(0, 5, 5, item_has_genres=True)
    assert not novel(1, 10, 10, item_has_genres=True)  # one film shares a genre
    assert not novel(0, 4, 5, item_has_genres=True)  # one film's genres are unknown
    assert not novel(0, 5, 5, item_has_genres=False)


def test_claims_are_read_from_the_template_by_slot_kind_and_wording():
    assert claims_in("<item> is a <g1> film, like others you have watched.") == [
        ClaimUse("shared_genre", "basic", ("<g1>",))
    ]
    assert claims_in("You clearly love <g1> and <g2>, so <item> is worth a look.") == [
        ClaimUse("shared_genre", "strong", ("<g1>", "<g2>"))
    ]
    assert claims_in("<item> is a <decs> film, and the <dec> clearly suit your taste.") == [
        ClaimUse("era", "strong", ("<decs>", "<dec>"))
    ]
    assert claims_in("Like <e1>, <item> comes from the <dec>.") == [
        ClaimUse("era", "basic", ("<dec>", "<e1>"))
    ]
    assert claims_in("The film has the style you seem to enjoy from that decade.") == [
        ClaimUse("era", "basic", ())
    ]
    assert claims_in("<item> sits right next to <s1> in spirit.") == [
        ClaimUse("similar_title", "basic", ("<s1>",))
    ]
    assert claims_in("Because you watched <h3>, you are likely to enjoy <item>.") == [
        ClaimUse("similar_title", "basic", ("<h3>",))
    ]
    assert claims_in("Since you recently watched <h1>, <item> is up next for you.") == [
        ClaimUse("history_reference", "basic", ("<h1>",))
    ]
    assert claims_in("<item> is a fresh pick that could widen your taste.") == [
        ClaimUse("novelty", "basic", ())
    ]
    assert claims_in("Released in <year>, <item> is a <a1> film.") == [
        ClaimUse("item_fact", "basic", ("<year>", "<a1>"))
    ]


def test_intensity_with_nothing_to_intensify_is_a_claim_of_its_own():
    assert claims_in("You clearly love this kind of film, so try <item>.") == [
        ClaimUse("shared_genre", "strong", ())
    ]


def test_each_sentence_is_read_on_its_own():
    claims = claims_in("You clearly enjoy <g1>. Like <s1>, it is from the <dec>.")
    assert ClaimUse("shared_genre", "strong", ("<g1>",)) in claims
    assert ClaimUse("era", "basic", ("<dec>",)) in claims  # "clearly" was the other sentence
    assert ClaimUse("similar_title", "basic", ("<s1>",)) in claims
