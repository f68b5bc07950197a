"""Formulas are model output evaluated by the verifier: none may hang it, crash it with an error
other than FormulaError (which the verifier records as data), or blow up memory (issue 26, item 1)."""

from __future__ import annotations

import time

import pytest

from forgerl.envs.cowork.formula import MAX_ROWS, CycleError, FormulaError, Sheet, cell_name


@pytest.mark.parametrize("formula", ["=ROUND(1, 1000000000)", "=ROUND(1, -1000000000)", "=ROUND(1, 1e999)", "=1e999",
                                     "=ROUND(2.5, 400)"])  # fmt: skip
def test_number_blowups_are_formula_errors_and_fast(formula):
    started = time.monotonic()
    with pytest.raises(FormulaError):
        Sheet({"A1": formula}).evaluate_all()
    assert time.monotonic() - started < 1.0


def test_round_still_rounds_half_away_from_zero():
    values = Sheet({"A1": "=ROUND(2.345, 2)", "A2": "=ROUND(-2.5)", "A3": "=ROUND(1234, -2)"}).evaluate_all()
    assert values == {"A1": 2.35, "A2": -3.0, "A3": 1200.0}


def chain(length: int, close_cycle: bool = False) -> dict[str, float | str]:
    """A1 = 1 (or a reference to the last cell), each next cell = previous + 1, column by column."""
    refs = [cell_name(c, r) for c in range(26) for r in range(1, MAX_ROWS + 1)][:length]
    cells: dict[str, float | str] = {refs[0]: f"={refs[-1]}+1" if close_cycle else 1.0}
    cells.update({ref: f"={prev}+1" for prev, ref in zip(refs, refs[1:])})
    return cells


def test_a_long_reference_chain_evaluates_without_recursion_error():
    cells = chain(3000)
    values = Sheet(cells).evaluate_all()
    assert max(values.values()) == 3000.0
    assert Sheet(cells).value(list(cells)[-1]) == 3000.0


def test_a_long_cycle_is_a_cycle_error():
    with pytest.raises(CycleError, match="circular reference"):
        Sheet(chain(3000, close_cycle=True)).evaluate_all()


def test_a_sheet_too_costly_to_recompute_is_refused_quickly():
    ranges = "+".join(["SUM(Z1:Z200)"] * 15)
    cells: dict[str, float | str] = {cell_name(25, r): float(r) for r in range(1, MAX_ROWS + 1)}
    cells.update({cell_name(c, r): "=" + ranges for c in range(25) for r in range(1, MAX_ROWS + 1)})
    started = time.monotonic()
    with pytest.raises(FormulaError, match="too large to recompute"):
        Sheet(cells).evaluate_all()
    assert time.monotonic() - started < 5.0
