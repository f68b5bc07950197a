"""Issue and prompt text for swe-js tasks, written from what a user could see: the call that
misbehaves, what came back and what was expected (never the mutation, so nothing leaks the diff).
Wording varies with a seeded rng so a policy cannot key on one template."""

from __future__ import annotations

import random
from typing import Any

from forgerl.envs.swe.verify import CaseResult
from forgerl.envs.swe_js.packages import Case

MAX_EXAMPLES = 2
VISIBLE_TEST = "test/visible.test.js"
ISSUE_TEST_FILE = "test/issue.test.js"

_TITLES = ("`{func}` returns the wrong result", "Unexpected behaviour in `{func}` ({package})",
           "Bug: `{func}` misbehaves for some inputs")
_OPENINGS = ("I ran into a problem with `{func}` in {package}.", "`{func}` gives a result I did not expect.",
             "While using {package} I noticed this about `{func}`.")
_CLOSINGS = ("Could you take a look?", "Is this a regression?", "Thanks!", "")


def _code(text: str) -> str:
    return f"```js\n{text.strip()}\n```"


def describe_failure(result: CaseResult) -> str | None:
    detail = result.detail
    if "expression" not in detail or "actual" not in detail or "expected" not in detail:
        return None
    return f"{_code(detail['expression'])}\ngives `{detail['actual']}`, but I expected `{detail['expected']}`."


def bug_report(func: str, package: str, failures: list[CaseResult], rng: random.Random) -> str:
    """ValueError when no failure says enough to write an issue."""
    paragraphs = [p for p in (describe_failure(f) for f in failures) if p]
    if not paragraphs:
        raise ValueError("no failing test carries an expression with expected and actual values")
    rng.shuffle(paragraphs)
    fill = {"func": func, "package": package}
    body = "\n\n".join(paragraphs[:MAX_EXAMPLES])
    return "\n\n".join(p for p in (f"# {rng.choice(_TITLES).format(**fill)}", rng.choice(_OPENINGS).format(**fill),
                                   body, rng.choice(_CLOSINGS)) if p)


def feature_request(func: str, module: str, package: str, cases: list[Case], rng: random.Random) -> str:
    examples = [c for c in cases if not c.throws][:3] or cases[:1]
    lines = [f"{c.expr}  // => {c.expect}" if not c.throws else f"{c.expr}  // throws {c.throws}" for c in examples]
    opening = rng.choice(("Please implement", "We need", "Feature request:"))
    return (f"# {opening} `{func}` in `{module}`\n\n`{func}` in {package}'s `{module}` is a stub that throws "
            f"\"not implemented\". Implement it so that the package behaves as documented; for example:\n\n"
            + _code("\n".join(lines)))


def perf_report(func: str, module: str, package: str, example: Case, at_least: float) -> str:
    """`at_least`: the slowdown generation guaranteed (a rule, not a timing, so the text rebuilds the same)."""
    return (f"# `{func}` became slow\n\n`{func}` in {package}'s `{module}` takes more than {at_least:g}x longer than it "
            f"used to, for the same results. A call like\n\n{_code(example.expr)}\n\nin a loop now dominates our "
            "runtime. Make it fast again without changing what it returns or throws.")


def _intro(data: dict[str, Any]) -> str:
    return (f"The workspace holds the source of the npm package `{data['package']}` (version {data['version']}) "
            f"and tests under `test/` (run them with `node --test test/`). ")


def prompt(data: dict[str, Any]) -> str:
    kind = data["kind"]
    tools = ("You can read, search and edit files and run shell commands (Node.js is installed; there is no "
             "network). Call `submit` when you are done; hidden tests decide the reward.")
    if kind == "write_test":
        return (_intro(data) + "A user reported the issue below. Do not fix the bug. Instead write a test file "
                f"`{ISSUE_TEST_FILE}` (node:test and node:assert; load the package with a relative require such as "
                "`require('../index.js')`) whose tests fail on the current code and pass once the bug is fixed (a "
                "test that fails for any other reason, or also fails on correct code, earns nothing). Call `submit` "
                f"when you are done.\n\n---\n\n{data['issue']}")
    task = {"bugfix": "Find the cause of the issue below and fix it in the package source (not in the tests), "
                      "keeping the other behaviour unchanged. ",
            "merged": "The issue below reports two problems; fix both in the package source (not in the tests), "
                      "keeping the other behaviour unchanged. ",
            "feature": "Implement the feature requested below in the package source. ",
            "perf": "Make the code faster as requested below; a hidden benchmark is timed against the current "
                    "version, and its results and all tests must stay the same. "}[kind]
    return _intro(data) + task + tools + f"\n\n---\n\n{data['issue']}"


def test_file(prelude: str, cases: tuple[Case, ...]) -> str:
    """A node:test file for `cases`, loading the package from the directory above `test/`."""
    lines = ["'use strict'", "const test = require('node:test')", "const assert = require('node:assert/strict')",
             prelude.replace("@/", "../"), ""]
    for case in cases:
        if case.throws:
            check = f"assert.throws(() => {case.expr}, {{ name: {case.throws!r} }})"
        else:
            check = f"assert.deepStrictEqual({case.expr}, {case.expect})"
        lines.append(f"test({case.name!r}, () => {{\n  {check}\n}})\n")
    return "\n".join(lines)
