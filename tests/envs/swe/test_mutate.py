"""Mutation operators on small snippets: each proposes the edit it should, the hunk applies and
reverts exactly, and untouched text (comments, formatting) stays byte-identical."""

from __future__ import annotations

import ast

import pytest

from forgerl.envs.swe.mutate import (
    OPERATORS,
    Mutation,
    Source,
    candidates_for_function,
    find_function,
    mutate_source,
)
from forgerl.errors import ConfigError


def mutants(code: str, operator: str, function: str = "f") -> list[str]:
    """Every buggy version of `code` that `operator` proposes inside `function`."""
    src = Source(code)
    found = candidates_for_function(src, function, {operator: OPERATORS[operator]})
    return [mutate_source(code, function, c)[1] for c in found]


def test_negate_comparison_flips_each_kind():
    code = "def f(a, b):\n    return a < b, a == b, a in b, a is b, a is not b, a not in b\n"
    got = mutants(code, "negate_comparison")
    assert "    return a >= b, a == b, a in b, a is b, a is not b, a not in b\n" in got[0]
    bodies = {m.splitlines()[1] for m in got}
    assert "    return a < b, a != b, a in b, a is b, a is not b, a not in b" in bodies
    assert "    return a < b, a == b, a not in b, a is b, a is not b, a not in b" in bodies
    assert "    return a < b, a == b, a in b, a is not b, a is not b, a not in b" in bodies
    assert "    return a < b, a == b, a in b, a is b, a is b, a not in b" in bodies
    assert "    return a < b, a == b, a in b, a is b, a is not b, a in b" in bodies
    assert len(got) == 6


def test_shift_boundary_only_touches_ordering():
    code = "def f(a, b):\n    if a <= b:\n        return a > b\n    return a == b\n"
    got = mutants(code, "shift_boundary")
    assert len(got) == 2
    assert "    if a < b:\n" in got[0]
    assert "        return a >= b\n" in got[1]


def test_comparison_of_shift_operators_is_not_confused():
    code = "def f(a, b):\n    return (a << 1) < (b >> 1)\n"
    (got,) = mutants(code, "shift_boundary")
    assert got.splitlines()[1] == "    return (a << 1) <= (b >> 1)"


def test_off_by_one_changes_int_literals_not_bools_or_docstrings():
    code = 'def f(xs):\n    """Take 2 items."""\n    flag = True\n    return xs[1:2]\n'
    got = mutants(code, "off_by_one")
    lines = sorted(m.splitlines()[3] for m in got)
    assert lines == ["    return xs[0:2]", "    return xs[1:1]", "    return xs[1:3]", "    return xs[2:2]"]
    assert all('"""Take 2 items."""' in m and "flag = True" in m for m in got)


def test_swap_arithmetic_binop_and_augassign():
    code = "def f(a, b):\n    a += b\n    return a * b - a % b\n"
    got = {m for m in mutants(code, "swap_arithmetic")}
    assert "def f(a, b):\n    a -= b\n    return a * b - a % b\n" in got
    assert "def f(a, b):\n    a += b\n    return a // b - a % b\n" in got
    assert "def f(a, b):\n    a += b\n    return a * b + a % b\n" in got
    assert "def f(a, b):\n    a += b\n    return a * b - a // b\n" in got


def test_swap_arithmetic_leaves_string_formatting_alone():
    code = 'def f(x):\n    return "%s!" % x\n'
    assert mutants(code, "swap_arithmetic") == []


def test_swap_boolean():
    code = "def f(a, b):\n    return a and b\n"
    assert mutants(code, "swap_boolean") == ["def f(a, b):\n    return a or b\n"]


def test_drop_else_branch_and_elif():
    code = (
        "def f(x):\n"
        "    if x > 0:\n"
        "        r = 1\n"
        "    elif x < 0:\n"
        "        r = -1\n"
        "    else:\n"
        "        r = 0\n"
        "    return r\n"
    )
    got = mutants(code, "drop_else_branch")
    assert "    elif x < 0:\n        r = -1\n    return r\n" not in got[0]
    assert got[0] == "def f(x):\n    if x > 0:\n        r = 1\n    return r\n"
    assert got[1] == "def f(x):\n    if x > 0:\n        r = 1\n    elif x < 0:\n        r = -1\n    return r\n"


def test_drop_guard_needs_a_sibling_statement():
    code = "def f(x):\n    if x is None:\n        return 0\n    return x + 1\n\ndef g(x):\n    if x:\n        return 1\n"
    assert mutants(code, "drop_guard") == ["def f(x):\n    return x + 1\n\ndef g(x):\n    if x:\n        return 1\n"]
    assert mutants(code, "drop_guard", "g") == []


def test_swap_arguments_skips_identical_and_starred():
    code = "def f(a, b):\n    return g(a, b), g(a, a), g(*a, b)\n"
    assert mutants(code, "swap_arguments") == ["def f(a, b):\n    return g(b, a), g(a, a), g(*a, b)\n"]


def test_negate_condition_adds_or_drops_not():
    code = "def f(x):\n    if x:\n        return not x\n    return 1 if x else 2\n"
    got = set(mutants(code, "negate_condition"))
    assert "def f(x):\n    if not (x):\n        return not x\n    return 1 if x else 2\n" in got
    assert "def f(x):\n    if x:\n        return x\n    return 1 if x else 2\n" in got
    assert "def f(x):\n    if x:\n        return not x\n    return 1 if not (x) else 2\n" in got


def test_flip_bool_constant():
    code = "def f():\n    return True\n"
    assert mutants(code, "flip_bool_constant") == ["def f():\n    return False\n"]


def test_every_mutant_parses_and_differs_and_reverts():
    code = (
        "import re\n\n"
        "class K:\n"
        "    def m(self, xs, n=2):\n"
        "        # a comment that must survive\n"
        "        out = []\n"
        "        for i, x in enumerate(xs):\n"
        "            if i % n == 0 and x is not None:\n"
        "                out.append(re.sub('a', 'b', x))\n"
        "            elif not x:\n"
        "                continue\n"
        "        return out[1:-1] if len(out) > 2 else out\n"
    )
    src = Source(code)
    found = candidates_for_function(src, "K.m")
    assert {c.operator for c in found} >= {
        "negate_comparison", "shift_boundary", "off_by_one", "swap_arithmetic", "swap_boolean",
        "drop_else_branch", "swap_arguments", "negate_condition",
    }  # fmt: skip
    for candidate in found:
        mutation, buggy = mutate_source(code, "K.m", candidate)
        assert buggy != code
        ast.parse(buggy)
        assert "# a comment that must survive" in buggy
        assert mutation.revert(buggy) == code
        assert mutation.original in code and mutation.buggy in buggy


def test_non_ascii_lines_keep_their_columns():
    code = 'def f(s):\n    return s == "ä" or s == "é"\n'
    got = mutants(code, "negate_comparison")
    assert got == ['def f(s):\n    return s != "ä" or s == "é"\n', 'def f(s):\n    return s == "ä" or s != "é"\n']


def test_mutation_hunk_refuses_a_different_file():
    code = "def f(a):\n    return a + 1\n"
    mutation, _ = mutate_source(code, "f", candidates_for_function(Source(code), "f")[0])
    with pytest.raises(ConfigError, match="does not match"):
        mutation.apply("def f(a):\n    return a - 7\n")
    assert Mutation(**mutation.to_dict()) == mutation


def test_find_function_reports_missing_names():
    tree = ast.parse("class A:\n    def m(self):\n        pass\n")
    assert find_function(tree, "A.m").name == "m"
    with pytest.raises(ConfigError, match="no function 'nope'"):
        find_function(tree, "A.nope")
    with pytest.raises(ConfigError, match="no class 'B'"):
        find_function(tree, "B.m")
