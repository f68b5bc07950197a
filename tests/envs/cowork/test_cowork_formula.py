"""The cowork spreadsheet: formulas evaluate like Excel on the cases a budget needs, every failure is
a FormulaError/CellRefError with a usable message, cycles are refused, and a refused write leaves
the sheet as it was."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.envs.cowork.formula import (
    CellRefError,
    CycleError,
    FormulaError,
    Sheet,
    expand_range,
    normalize_cell,
    parse_cell,
)
from forgerl.errors import ToolError

BASE = {"A1": 10.0, "A2": 20.0, "A3": 30.5, "B1": "label", "C1": -4.0}


@pytest.mark.parametrize(
    ("formula", "value"),
    [
        ("=1+2*3", 7.0),
        ("=(1+2)*3", 9.0),
        ("=10/4", 2.5),
        ("=2--3", 5.0),
        ("=-A1+A2", 10.0),
        ("=+A1", 10.0),
        ("=a1*2", 20.0),
        ("=$A$1+A$2", 30.0),
        ("= A1 + A2 ", 30.0),
        ("=SUM(A1:A3)", 60.5),
        ("=SUM(A1:A3, 10, C1)", 66.5),
        ("=sum(A3:A1)", 60.5),
        ("=SUM(A1:C1)", 6.0),  # the text in B1 is skipped inside a range
        ("=SUM(D1:D5)", 0.0),  # empty range
        ("=MIN(A1:A3)", 10.0),
        ("=MAX(A1:A3, 100)", 100.0),
        ("=AVERAGE(A1:A2)", 15.0),
        ("=ROUND(2.345, 2)", 2.35),
        ("=ROUND(-2.5)", -3.0),
        ("=ABS(C1)", 4.0),
        ("=D9+1", 1.0),  # an empty cell is 0 in arithmetic
        ("=1.5e2", 150.0),
        ("=.5*4", 2.0),
        ("=SUM(A1:A2)/2-ABS(C1)", 11.0),
    ],
)
def test_formulas_evaluate(formula, value):
    sheet = Sheet(BASE)
    sheet.write("E1", formula)
    assert sheet.value("E1") == pytest.approx(value)


@pytest.mark.parametrize(
    ("formula", "error", "message"),
    [
        ("=1/0", FormulaError, "division by zero"),
        ("=A1/D5", FormulaError, "division by zero"),
        ("=B1+1", FormulaError, "B1 holds text 'label'"),
        ("=SUM(", FormulaError, "ends too early"),
        ("=SUM(A1 A2)", FormulaError, "expected ',' or '\\)'"),
        ("=FOO(1)", FormulaError, "unknown function FOO"),
        ("=A1:A3", FormulaError, "only be used inside a function"),
        ("=1+", FormulaError, "ends too early"),
        ("=", FormulaError, "empty formula"),
        ("=1 2", FormulaError, "unexpected '2'"),
        ("=(1+2", FormulaError, "ends too early"),
        ("=1+2)", FormulaError, "unexpected '\\)'"),
        ("=A1 & A2", FormulaError, "unexpected character '&'"),
        ("=AVERAGE(D1:D3)", FormulaError, "AVERAGE of no numbers"),
        ("=ABS(1, 2)", FormulaError, "ABS takes exactly one argument"),
        ("=1e999", FormulaError, "too large"),
        ("=1e300*1e300", FormulaError, "overflowed"),
        ("=" + "1+" * 120 + "1", FormulaError, "longer than"),
        ("=ZZ1", CellRefError, "outside the sheet"),
        ("=A0", CellRefError, "outside the sheet"),
        ("=A1000", CellRefError, "outside the sheet"),
    ],
)
def test_bad_formulas_are_refused_and_the_cell_keeps_its_value(formula, error, message):
    sheet = Sheet(BASE)
    sheet.write("E1", 5.0)
    with pytest.raises(error, match=message):
        sheet.write("E1", formula)
    assert sheet.raw("E1") == 5.0 and sheet.value("E1") == 5.0
    assert issubclass(error, ToolError)  # the env shows these to the agent as tool errors


def test_a_refused_write_to_a_new_cell_leaves_it_empty():
    sheet = Sheet(BASE)
    with pytest.raises(FormulaError):
        sheet.write("F3", "=1/0")
    assert sheet.raw("F3") is None and "F3" not in sheet.evaluate_all()


@pytest.mark.parametrize(
    ("writes", "cycle"),
    [
        ([("E1", "=E1+1")], "E1 -> E1"),
        ([("E1", "=E2"), ("E2", "=E1*2")], "E2 -> E1 -> E2"),
        ([("E1", "=E2"), ("E2", "=E3"), ("E3", "=SUM(E1:E1)")], "E3 -> E1 -> E2 -> E3"),
        ([("A4", "=SUM(A1:A4)")], "A4 -> A4"),
    ],
)
def test_cycles_are_refused_with_their_path(writes, cycle):
    sheet = Sheet(BASE)
    *ok, (last_cell, last_formula) = writes
    for cell, formula in ok:
        sheet.write(cell, formula)
    before = dict(sheet.cells)
    with pytest.raises(CycleError, match="circular reference") as info:
        sheet.write(last_cell, last_formula)
    assert cycle in str(info.value)
    assert sheet.cells == before


def test_dependents_recompute_after_a_write():
    sheet = Sheet({"B2": 100.0, "C2": 40.0, "D2": "=B2-C2", "D3": "=SUM(D2:D2)*2"})
    assert sheet.value("D3") == 120.0
    sheet.write("C2", 55.5)
    assert sheet.value("D2") == 44.5 and sheet.value("D3") == 89.0
    sheet.write("C2", None)  # clearing a cell makes it 0 for its dependents
    assert sheet.value("D2") == 100.0


def test_text_cells_and_length_limit():
    sheet = Sheet()
    sheet.write("A1", "Total")
    assert sheet.value("A1") == "Total"
    with pytest.raises(FormulaError, match="longer than"):
        sheet.write("A2", "x" * 500)


@pytest.mark.parametrize(("ref", "parsed"), [("A1", (0, 1)), ("b7", (1, 7)), ("$Z$200", (25, 200)), (" C4 ", (2, 4))])
def test_cell_references_parse(ref, parsed):
    assert parse_cell(ref) == parsed


@pytest.mark.parametrize("ref", ["", "C", "4C", "C-1", "A1B", "AAA1", "C 4", None, 12])
def test_malformed_cell_references_say_what_a_valid_one_is(ref):
    with pytest.raises(CellRefError, match="e.g. B7"):
        parse_cell(ref)


def test_normalize_and_expand():
    assert normalize_cell("$d$7") == "D7"
    assert expand_range("B2", "C3") == ["B2", "C2", "B3", "C3"]
    assert expand_range("C3", "B2") == ["B2", "C2", "B3", "C3"]


_ops = st.sampled_from(["+", "-", "*"])


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return str(draw(st.integers(min_value=0, max_value=999)))
    left, right = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    sign = draw(st.sampled_from(["", "-"]))
    return f"{sign}({left}) {draw(_ops)} ({right})"


@given(expressions())
@settings(max_examples=150, deadline=None)
def test_arithmetic_agrees_with_python(expression):
    sheet = Sheet()
    sheet.write("A1", "=" + expression)
    assert sheet.value("A1") == pytest.approx(float(eval(expression)))  # noqa: S307 (integers and + - * only)


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_formula_text_raises_only_tool_errors(text):
    sheet = Sheet(BASE)
    try:
        sheet.write("E1", "=" + text)
    except ToolError:
        assert sheet.raw("E1") is None
        return
    assert isinstance(sheet.value("E1"), float)
