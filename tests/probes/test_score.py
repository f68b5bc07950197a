"""The probes' scorers against hand-computed cases (forgerl/probes/score.py)."""

from __future__ import annotations

import pytest

from forgerl.chat import get_format
from forgerl.probes.score import (
    exact_match,
    first_digit_run,
    free_running_digits,
    normalize_reply,
    reply_of,
    says_word,
    teacher_forced_digits,
    token_spans,
)


def test_reply_of_strips_thinking_and_reads_unparsable_replies() -> None:
    fmt = get_format("minimax_m2")
    assert reply_of(fmt, "I should repeat it.\n</think>\n\nZorvel[e~[") == ("Zorvel", True)
    assert reply_of(fmt, "Zorvel[e~[") == ("Zorvel", False)  # thinking never closed: all of it is read
    assert reply_of(fmt, "x</think>\n\nZorvel</think>") == ("\n\nZorvel</think>", False)  # a stray marker


def test_exact_match_is_case_sensitive_after_stripping_wrappers() -> None:
    assert normalize_reply(' "Zorvel." \n') == "Zorvel"
    assert exact_match("**Zorvel**", "Zorvel")
    assert exact_match("`Zorvel`!", "Zorvel")
    assert not exact_match("zorvel", "Zorvel")
    assert not exact_match("The name is Zorvel.", "Zorvel")
    assert not exact_match("Zorvels", "Zorvel")


def test_says_word_wants_the_exact_spelling_as_a_word() -> None:
    assert says_word("The new river is called Zorvel.", "Zorvel")
    assert says_word("Zorvel", "Zorvel")
    assert says_word("**Zorvel**_2", "Zorvel")
    assert not says_word("Zorvels", "Zorvel")
    assert not says_word("AZorvel", "Zorvel")
    assert not says_word("zorvel", "Zorvel")
    assert not says_word("Zor vel", "Zorvel")


def test_free_running_compares_the_first_digit_run_position_by_position() -> None:
    assert first_digit_run("code: 12a45") == "12"
    assert first_digit_run("none") == ""
    assert free_running_digits("12a45", "1245") == [True, True, False, False]  # missing digits count wrong
    assert free_running_digits("0249", "1249") == [False, True, True, True]
    assert free_running_digits("1245999", "1245") == [True] * 4  # extra digits are not counted here
    assert free_running_digits("", "77") == [False, False]
    assert free_running_digits("The answer is 1 2 4 5", "1245") == [True, False, False, False]


def test_teacher_forced_lays_each_predicted_token_over_the_correct_ones_span() -> None:
    pieces = ["\n</think>\n\n", "48", "213", "[e~["]
    assert token_spans(pieces) == [(0, 11), (11, 13), (13, 16), (16, 20)]
    # '4' for '48': the 4 right, the 8 not covered; '219' for '213': 2 and 1 right, 3 wrong
    assert teacher_forced_digits(pieces, ["", "4", "219", "[e~["], 11, 16) == [True, False, True, True, False]
    # a longer prediction is read only over the correct token's span
    assert teacher_forced_digits(pieces, ["", "485", "213", ""], 11, 16) == [True] * 5
    assert teacher_forced_digits(pieces, ["", "84", "", ""], 11, 16) == [False] * 5
    with pytest.raises(ValueError, match="predictions"):
        teacher_forced_digits(pieces, ["48"], 11, 16)
    with pytest.raises(ValueError, match="outside"):
        teacher_forced_digits(pieces, pieces, 11, 99)
