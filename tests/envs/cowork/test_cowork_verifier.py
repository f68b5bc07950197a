"""The cowork verifier: facts match tolerantly of formatting but not of value, the sheet is judged
after recalculation, untouched cells must stay untouched, and the score is all-or-nothing while the
breakdown and evidence show each component."""

from __future__ import annotations

import pytest

from forgerl.envs.cowork.verifier import (
    CellCheck,
    Fact,
    MessageCheck,
    VerifierSpec,
    fact_found,
    numbers_in,
    verify,
)
from forgerl.envs.cowork.workplace import Mail, Reply, WorkplaceState

CELLS = {"A2": "Office", "B2": 5000.0, "C2": 1200.0, "D2": "=B2-C2", "C3": "=SUM(C2:C2)"}


def _state(**changes) -> WorkplaceState:
    mail = Mail(id="m1", sender_name="Acme", sender_email="a@acme.example", date="2025-03-01", subject="Invoice", body="Total due: $345.50")
    return WorkplaceState(mails=[mail], cells={**CELLS, **changes.pop("cells", {})}, **changes)


SPEC = VerifierSpec(
    cells=[
        CellCheck(cell="C2", expected=1545.5, label="office spent"),
        CellCheck(cell="D2", expected=3454.5, label="office remaining"),
    ],
    unchanged={k: v for k, v in CELLS.items() if k != "C2"},
    replies=[MessageCheck(target="m1", facts=[Fact(kind="number", value=3454.5, label="remaining"), Fact(kind="text", value="Office", label="category")])],
)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("1,234.50", [1234.5]),
        ("$1234.5 and 1234.50 USD", [1234.5, 1234.5]),
        ("we are at -12.25 now.", [-12.25]),
        ("€ 3,000", [3000.0]),
        ("invoice INV-2041 for 7 items", [2041.0, 7.0]),
        ("1,000,000.01", [1000000.01]),
    ],
)
def test_numbers_are_read_whatever_their_formatting(text, numbers):
    assert numbers_in(text) == pytest.approx(numbers)


@pytest.mark.parametrize(
    ("kind", "value", "text", "found"),
    [
        ("number", 1234.5, "The new balance is $1,234.50.", True),
        ("number", 1234.5, "The new balance is 1234.5", True),
        ("number", 1234.5, "The new balance is 1234", False),
        ("number", 1234.5, "The new balance is 1,234.56", False),
        ("text", "Harbor AV Rentals", "booked the harbor av  rentals invoice", True),
        ("text", "Harbor AV Rentals", "booked the Harbor invoice", False),
        ("date", "2025-03-04", "on 2025-03-04", True),
        ("date", "2025-03-04", "on March 4th", True),
        ("date", "2025-03-04", "on 4 Mar 2025", True),
        ("date", "2025-03-04", "on 04/03/2025", True),
        ("date", "2025-03-04", "on 3/4/2025", True),
        ("date", "2025-03-04", "on March 14", False),
        ("date", "2025-03-04", "on 2025-03-14", False),
        ("date", "2025-03-04", "on 4 May", False),
        ("time", "14:30", "starts at 14:30", True),
        ("time", "14:30", "starts at 2:30 pm", True),
        ("time", "14:30", "starts at 2.30PM", True),
        ("time", "14:30", "starts at 2:30 am", False),
        ("time", "14:30", "starts at 4:30", False),
        ("time", "09:00", "starts at 9 a.m.", True),
        ("time", "09:00", "starts at 09:00", True),
        ("time", "09:00", "starts at 19:00", False),
    ],
)
def test_facts_match_tolerantly_of_format_but_not_of_value(kind, value, text, found):
    assert fact_found(Fact(kind=kind, value=value, label="x"), text) is found


def test_everything_right_scores_one():
    state = _state(cells={"C2": "=1200+345.5"}, replies=[Reply(in_reply_to="m1", to="a", subject="Re", body="Office now has 3,454.50 left")])
    score, breakdown, checks = verify(SPEC, state)
    assert score == 1.0 and breakdown == {"sheet": 1.0, "reply": 1.0, "checks_passed": 1.0, "all_passed": 1.0}
    assert all(c.passed for c in checks) and len(checks) == 5


def test_sheet_right_reply_wrong_is_partial_in_the_breakdown_but_scores_zero():
    state = _state(cells={"C2": 1545.5}, replies=[Reply(in_reply_to="m1", to="a", subject="Re", body="Office now has 3,000 left")])
    score, breakdown, checks = verify(SPEC, state)
    assert score == 0.0 and breakdown["sheet"] == 1.0 and breakdown["reply"] == 0.5
    assert breakdown["checks_passed"] == pytest.approx(4 / 5) and breakdown["all_passed"] == 0.0
    failed = [c for c in checks if not c.passed]
    assert len(failed) == 1 and failed[0].expected == 3454.5 and failed[0].found == [3000.0]


def test_no_op_scores_zero_and_the_evidence_says_what_was_missing():
    score, breakdown, checks = verify(SPEC, _state())
    assert score == 0.0 and breakdown["sheet"] == pytest.approx(1 / 3) and breakdown["reply"] == 0.0
    by_name = {c.name: c for c in checks}
    assert by_name["C2: office spent"].found == 1200.0 and by_name["C2: office spent"].expected == 1545.5
    assert by_name["reply to m1 states remaining"].found == "no reply to m1"


def test_overwriting_a_formula_with_its_value_breaks_the_unchanged_check():
    state = _state(cells={"C2": 1545.5, "D2": 3454.5}, replies=[Reply(in_reply_to="m1", to="a", subject="Re", body="Office: 3454.50")])
    score, _, checks = verify(SPEC, state)
    unchanged = next(c for c in checks if c.name.startswith("cells outside"))
    assert score == 0.0 and not unchanged.passed
    assert unchanged.found == {"D2": {"before": "=B2-C2", "after": 3454.5}}


def test_reformatted_formula_counts_as_unchanged():
    state = _state(cells={"C2": 1545.5, "D2": "= b2 - c2"}, replies=[Reply(in_reply_to="m1", to="a", subject="Re", body="Office: 3454.50")])
    assert verify(SPEC, state)[0] == 1.0


def test_only_the_last_reply_to_a_mail_counts_and_replies_elsewhere_do_not():
    good = Reply(in_reply_to="m1", to="a", subject="Re", body="Office: 3454.50")
    bad = Reply(in_reply_to="m1", to="a", subject="Re", body="sorry, ignore that")
    elsewhere = Reply(in_reply_to="m9", to="b", subject="Re", body="Office: 3454.50")
    assert verify(SPEC, _state(cells={"C2": 1545.5}, replies=[bad, good]))[0] == 1.0
    assert verify(SPEC, _state(cells={"C2": 1545.5}, replies=[good, bad]))[0] == 0.0
    assert verify(SPEC, _state(cells={"C2": 1545.5}, replies=[elsewhere]))[0] == 0.0


def test_a_broken_sheet_is_a_failed_check_not_a_crash():
    state = _state(cells={"C2": "=C3"})  # C3 = SUM(C2:C2): a cycle built outside the tools
    score, breakdown, checks = verify(SPEC, state)
    assert score == 0.0 and "circular reference" in str(checks[0].found)


def test_notes_are_found_by_title_case_insensitively():
    spec = VerifierSpec(notes=[MessageCheck(target="Offsite details", facts=[Fact(kind="text", value="Room 4B", label="location")])])
    assert verify(spec, _state(notes={"offsite  DETAILS": "In room 4b."}))[0] == 1.0
    score, _, checks = verify(spec, _state(notes={"Other": "Room 4B"}))
    assert score == 0.0 and checks[0].found == "no note titled 'Offsite details'"


def test_an_empty_spec_never_passes():
    assert verify(VerifierSpec(), _state())[0] == 0.0
