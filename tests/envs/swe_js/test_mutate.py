"""Mutation through tree-sitter on small JavaScript sources: each operator proposes what it should,
hunks apply and revert exactly, functions are found by qualified name, and the feature stub and the
slowdown still parse."""

from __future__ import annotations

import pytest

from forgerl.envs.swe_js.mutate import (
    Injected,
    JsSource,
    apply_all,
    apply_edits,
    bug_candidates,
    find_function,
    parses,
    recompute,
    removal,
    to_mutation,
)
from forgerl.errors import ConfigError

SOURCE = """'use strict'
const clamp = (x, lo, hi) => {
  if (x < lo) {
    return lo
  } else {
    return hi
  }
}

function count (items) {
  let n = 0
  for (let i = 0; i < items.length; i++) {
    n = n + 1
  }
  return n > 0 && true ? n : -1
}

class Box {
  size (a) {
    return a.width * a.height
  }
}
module.exports = function (v) { return v !== null || v === 0 }
"""


def ops(name: str) -> dict[str, list[str]]:
    src = JsSource(SOURCE)
    found: dict[str, list[str]] = {}
    for c in bug_candidates(src, name):
        found.setdefault(c.operator, []).append(apply_edits(SOURCE, c.edits))
    return found


def test_functions_are_found_by_qualified_name():
    src = JsSource(SOURCE)
    for name in ("clamp", "count", "Box.size", "module.exports"):
        assert find_function(src, name) is not None
    with pytest.raises(ConfigError, match="found 0 times"):
        find_function(src, "missing")


def test_each_operator_makes_its_edit():
    clamp, count = ops("clamp"), ops("count")
    assert any("if (x >= lo)" in m for m in clamp["negate_comparison"])
    assert any("if (x <= lo)" in m for m in clamp["shift_boundary"])
    assert any("if (!(x < lo))" in m for m in clamp["negate_condition"])
    assert any("return hi\n  } else {\n    return lo" in m for m in clamp["swap_branches"])
    assert any("n = n - 1" in m for m in count["swap_arithmetic"])
    assert any("let n = 1" in m for m in count["off_by_one"])
    assert any("n > 0 || true" in m for m in count["swap_logical"])
    assert any("&& false" in m for m in count["flip_bool"])
    assert any("return n > 0" not in m for m in count["drop_statement"])
    assert any("a.width / a.height" in m for m in ops("Box.size")["swap_arithmetic"])
    assert any("v === null" in m for m in ops("module.exports")["negate_comparison"])


def test_every_candidate_is_a_hunk_that_reverts_exactly():
    src = JsSource(SOURCE)
    for name in ("clamp", "count", "Box.size"):
        for candidate in bug_candidates(src, name):
            mutation = to_mutation(SOURCE, name, candidate)
            buggy = mutation.apply(SOURCE)
            assert buggy == apply_edits(SOURCE, candidate.edits)
            assert mutation.revert(buggy) == SOURCE


def test_nested_functions_named_as_other_targets_are_skipped():
    nested = "function outer (a) {\n  function inner (b) { return b + 1 }\n  return inner(a) * 2\n}\n"
    src = JsSource(nested)
    with_inner = {apply_edits(nested, c.edits) for c in bug_candidates(src, "outer")}
    without = {apply_edits(nested, c.edits) for c in bug_candidates(src, "outer", skip=("inner",))}
    assert any("b - 1" in m for m in with_inner) and not any("b - 1" in m for m in without)


def test_feature_stub_and_slowdown_parse_and_keep_the_rest():
    src = JsSource(SOURCE)
    stub = apply_edits(SOURCE, removal(src, "count").edits)
    assert parses(stub) and 'throw new Error("not implemented")' in stub and "class Box" in stub
    slow = apply_edits(SOURCE, recompute(src, "count", times=7).edits)
    assert parses(slow) and "attempt < 7" in slow and "const compute = () =>" in slow
    assert not parses("function (")


def test_two_hunks_of_one_file_apply_together():
    src = JsSource(SOURCE)
    a = to_mutation(SOURCE, "clamp", next(c for c in bug_candidates(src, "clamp") if c.operator == "negate_comparison"))
    b = to_mutation(SOURCE, "Box.size", next(c for c in bug_candidates(src, "Box.size") if c.operator == "swap_arithmetic"))
    both = apply_all({"m.js": SOURCE}, [Injected("m.js", a), Injected("m.js", b)])["m.js"]
    assert "x >= lo" in both and "a.width / a.height" in both
    assert Injected.from_dict(Injected("m.js", a).to_dict()) == Injected("m.js", a)
