"""The Go source layer: operators found on the syntax tree (never in strings or comments), edits
in UTF-8 bytes, test -> function mapping, the feature stub, the slowdowns, the standalone test."""

from __future__ import annotations

import pytest

from forgerl.envs.swe_go import gosrc
from forgerl.errors import ConfigError

SOURCE = '''package demo

import "strings"

// Clamp keeps v within [lo, hi]; "<" in this comment is not an operator.
func Clamp(v, lo, hi int) int {
	if v < lo {
		return lo
	} else {
		v = v + 0
	}
	if v > hi {
		return hi
	}
	return v
}

func Shout(s string) string {
	label := "a < b && c"  // 世界: multi-byte text before the edits
	count++
	return strings.ToUpper(s) + label[:0]
}

var count int
'''


def _fn(name: str) -> gosrc.GoFunction:
    return next(f for f in gosrc.functions("demo.go", SOURCE) if f.name == name)


def test_functions_and_signatures() -> None:
    clamp, shout = _fn("Clamp"), _fn("Shout")
    assert clamp.params == (("v", "int"), ("lo", "int"), ("hi", "int")) and clamp.results == "int"
    assert gosrc.benchable(shout) and not gosrc.benchable(clamp)  # no string parameter


def test_every_operator_fires_and_each_mutant_parses() -> None:
    edits = gosrc.mutations("demo.go", SOURCE, _fn("Clamp")) + gosrc.mutations("demo.go", SOURCE, _fn("Shout"))
    operators = {e.operator for e in edits}
    assert {"comparison_flip", "arithmetic_swap", "off_by_one", "negate_condition", "swap_branches",
            "remove_statement"} <= operators  # fmt: skip
    for edit in edits:
        mutant = edit.apply(SOURCE)
        assert mutant != SOURCE and not gosrc.has_errors(mutant), edit
    # the `<` and `&&` inside the string literal and the comment are never touched
    for edit in edits:
        assert '"a < b && c"' in edit.apply(SOURCE) and '"<" in this comment' in edit.apply(SOURCE)


def test_specific_mutants() -> None:
    edits = {(e.operator, e.old): e for e in gosrc.mutations("demo.go", SOURCE, _fn("Clamp"))}
    assert "if v <= lo {" in edits[("comparison_flip", "<")].apply(SOURCE)
    assert "if !(v < lo) {" in edits[("negate_condition", "v < lo")].apply(SOURCE)
    swapped = next(e for e in edits.values() if e.operator == "swap_branches").apply(SOURCE)
    assert swapped.index("v = v + 0") < swapped.index("return lo")


def test_edit_refuses_a_different_file() -> None:
    edit = gosrc.mutations("demo.go", SOURCE, _fn("Shout"))[0]
    with pytest.raises(ConfigError, match="does not hold"):
        edit.apply(SOURCE.replace("package demo", "package other"))


def test_stub_and_slowdowns_parse() -> None:
    stub = gosrc.stub_body(SOURCE, _fn("Clamp")).apply(SOURCE)
    assert 'panic("not implemented")' in stub and "return lo" not in stub and not gosrc.has_errors(stub)
    for kind in gosrc.SLOWDOWNS:
        slow = gosrc.slowdown(SOURCE, _fn("Shout"), kind).apply(SOURCE)
        assert not gosrc.has_errors(slow) and "len(s)" in slow


TESTS = {
    "demo_test.go": '''package demo

import (
	"strings"
	"testing"
)

func check(t *testing.T, got, want int) {
	if got != want {
		t.Fatal(strings.Repeat("x", 1))
	}
}

func TestClamp(t *testing.T) { check(t, Clamp(5, 0, 3), 3) }
func TestShout(t *testing.T) { if Shout("a") != "A" { t.Fail() } }
func TestNothing(t *testing.T) {}
''',
}


def test_test_calls_follow_helpers() -> None:
    calls = gosrc.test_calls(TESTS)
    assert gosrc.tests_of(_fn("Clamp"), calls) == ["TestClamp"]
    assert gosrc.tests_of(_fn("Shout"), calls) == ["TestShout"]
    assert "TestNothing" in calls


def test_standalone_test_keeps_helpers_and_used_imports_only() -> None:
    text = gosrc.standalone_test(TESTS, ["TestShout"])
    assert "func TestShout" in text and "TestClamp" not in text and "func check" not in text
    assert '"testing"' in text and '"strings"' not in text and not gosrc.has_errors(text)
    with_helper = gosrc.standalone_test(TESTS, ["TestClamp"])
    assert "func check" in with_helper and '"strings"' in with_helper


def test_standalone_test_keeps_a_helper_type_named_like_a_test() -> None:
    sources = {"a_test.go": 'package demo\n\nimport "testing"\n\ntype TestStruct struct{ in, want string }\n\n'
                            'func TestOther(t *testing.T) {}\n\nfunc TestShout(t *testing.T) {\n'
                            '\tfor _, c := range []TestStruct{{"a", "A"}} {\n\t\tif Shout(c.in) != c.want {\n'
                            '\t\t\tt.Fail()\n\t\t}\n\t}\n}\n'}  # fmt: skip
    text = gosrc.standalone_test(sources, ["TestShout"])
    assert "type TestStruct" in text and "TestOther" not in text


def test_standalone_test_keeps_the_test_files_order() -> None:
    """The gold test's declarations come in the source's order, not in the order a set of called
    names happened to reach them (which changed with the interpreter's hash seed between builds)."""
    source = ('package demo\n\nimport "testing"\n\nvar zeta = "z"\n\nfunc alpha() string { return zeta }\n\n'
              'func mid() string { return alpha() + beta() }\n\nfunc beta() string { return "b" }\n\n'
              'func TestShout(t *testing.T) {\n\tif Shout(mid()+alpha()+beta()+zeta) == "" {\n\t\tt.Fail()\n\t}\n}\n')  # fmt: skip
    text = gosrc.standalone_test({"a_test.go": source}, ["TestShout"])
    order = [text.index(decl) for decl in ("var zeta", "func alpha", "func mid", "func beta", "func TestShout")]
    assert order == sorted(order), text
