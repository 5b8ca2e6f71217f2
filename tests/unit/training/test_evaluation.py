from training.evaluation import QUALITY_BARS, bars_passed, check_bars


def healthy(**changes):
    """Figures that meet every bar (each bar's own value, on the passing side)."""
    values = {key: bar for key, (_, bar) in QUALITY_BARS.items() if key != "aspect_gap"}
    values.update(aspect_match_full_macro=0.965, aspect_match_no_user_macro=0.527)
    values.update(changes)
    return values


def test_the_aspect_bars_ask_for_a_personalised_student_and_a_user_vector_that_causes_it():
    bars = check_bars(healthy())
    assert bars_passed(bars) and abs(bars["aspect_gap"]["value"] - 0.438) < 1e-9
    # A student whose user vectors never took hold: fails both.
    collapsed = check_bars(healthy(aspect_match_full_macro=0.55, aspect_match_no_user_macro=0.36))
    assert collapsed["aspect_gap"]["passed"] is False
    assert collapsed["aspect_match_full_macro"]["passed"] is False
    # Good aspects that the content alone explains: the gap fails.
    content_only = check_bars(healthy(aspect_match_full_macro=0.9, aspect_match_no_user_macro=0.7))
    assert content_only["aspect_gap"]["passed"] is False and not bars_passed(content_only)


def test_a_figure_the_data_set_cannot_give_is_na_not_passed_or_failed():
    values = healthy()
    del values["aspect_match_full_macro"], values["aspect_match_no_user_macro"]
    bars = check_bars(values)
    assert (
        bars["aspect_gap"]["passed"] is None and bars["aspect_match_full_macro"]["passed"] is None
    )
    assert bars_passed(bars)
    assert (
        check_bars(healthy(messy_distinct_patterns=34))["messy_distinct_patterns"]["passed"]
        is False
    )
