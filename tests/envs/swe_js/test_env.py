"""The swe-js environment on shipped tasks: gold scores 1 and the no-op 0 for a sample of every
kind, the tools refuse paths outside the workspace, and the attacks an agent could try on the
verifier (planted package.json scripts and test files, process.exit at import, patched assert,
fake result lines, copying the bug-free package from npm's own bundle) all score 0."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from forgerl.envs.base import Task, Verdict, family_info
from forgerl.envs.swe_js import FAMILY, SweJsEnv, load_swe_js_tasks, swe_js_suite
from forgerl.envs.swe_js.mutate import Injected
from forgerl.errors import ToolError
from forgerl.types import ToolCall


def first(kind: str, package: str | None = None) -> Task:
    tasks = sorted((t for t in load_swe_js_tasks(kind) if package in (None, t.data["package"])), key=lambda t: t.id)
    assert tasks, f"no shipped {kind} task" + (f" of {package}" if package else "")
    return tasks[0]


async def _play(task: Task, rounds: list[list[ToolCall]]) -> tuple[Verdict, list[str]]:
    env = SweJsEnv()
    env.reset(task)
    outputs = []
    try:
        for calls in rounds:
            for call in calls:
                outputs.append(await env.execute(call))
        return env.verify(None), outputs  # type: ignore[arg-type]
    finally:
        await env.close()


def play(task: Task, rounds: list[list[ToolCall]]) -> Verdict:
    return asyncio.run(_play(task, rounds))[0]


def call(name: str, **arguments: Any) -> list[ToolCall]:
    return [ToolCall(name=name, arguments=arguments)]


SUBMIT = call("submit")


def test_family_is_registered_with_a_split_by_function():
    assert family_info(FAMILY).make_env is SweJsEnv
    split = swe_js_suite().split
    train = {(t.data["package"], t.data["module"], t.data["function"]) for t in split.train}
    held = {(t.data["package"], t.data["module"], t.data["function"]) for t in split.held_out}
    assert train and held and not train & held
    tasks = load_swe_js_tasks()
    kinds = {k: sum(t.data["kind"] == k for t in tasks) for k in ("bugfix", "write_test", "feature", "perf", "merged")}
    assert len(tasks) >= 100 and min(kinds.values()) >= 20, kinds
    assert len({t.data["package"] for t in tasks}) >= 3
    assert all(t.data["language"] == "javascript" for t in tasks)


@pytest.mark.parametrize("kind", ["bugfix", "write_test", "feature", "merged"])
def test_gold_scores_one_and_noop_zero(kind):
    task = first(kind)
    gold = play(task, SweJsEnv().gold_solution(task))
    assert gold.outcome == 1.0, gold
    assert play(task, [SUBMIT]).outcome == 0.0


@pytest.mark.slow
def test_perf_gold_scores_one_and_noop_zero():
    task = first("perf")
    gold = play(task, SweJsEnv().gold_solution(task))
    assert gold.outcome == 1.0 and gold.parts["speedup_ok"] == 1.0, gold
    assert gold.evidence["perf"]["conservative_speedup"] >= 1.5
    assert play(task, [SUBMIT]).outcome == 0.0


def test_paths_outside_the_workspace_are_refused():
    task = first("bugfix")

    async def go() -> None:
        env = SweJsEnv()
        env.reset(task)
        try:
            for name, args in [("read_file", {"path": "../secret"}), ("write_file", {"path": "/etc/x", "content": ""}),
                               ("edit_file", {"path": "a/../../x", "old_text": "a", "new_text": "b"}),
                               ("read_file", {"path": "~/x"})]:
                with pytest.raises(ToolError):
                    await env.execute(ToolCall(name=name, arguments=args))
            listing = await env.execute(ToolCall(name="run_shell", arguments={"command": "ls; node --version"}))
            assert "package.json" in listing and "v" in listing
        finally:
            await env.close()

    asyncio.run(go())


def _prepend(task: Task, code: str) -> list[ToolCall]:
    """Gold fix, then `code` put at the top of the mutated module (runs when it is required)."""
    module = Injected.from_dict(task.data["mutations"][0]).module
    return call("run_shell", command=f"printf '%s\\n' {_quote(code)} | cat - {module} > /tmp/m && cp /tmp/m {module}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


ATTACKS = {
    "package.json test script": call("write_file", path="package.json",
                                     content='{"name": "x", "scripts": {"test": "exit 0"}, "type": "module"}'),
    "planted test files": call("write_file", path="test/visible.test.js", content="require('node:test')('ok', () => {})\n")
    + call("write_file", path=".mocharc.json", content='{"spec": []}')
    + call("write_file", path="node_modules/assert/index.js", content="module.exports = () => {}\n"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_planted_files_do_not_reach_the_verifier(attack):
    task = first("bugfix")
    verdict = play(task, [ATTACKS[attack], SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["f2p_passed"] < 1.0


@pytest.mark.parametrize("code, tampered", [
    ("process.exit(0)", True),
    ("const a = require('assert'); a.strictEqual = () => {}; a.deepStrictEqual = () => {}; a.equal = () => {}", False),
    ("require('fs').writeSync(1, '{\"t\": 0, \"value\": [\"s\", \"x\"]}\\n{\"done\": 1}\\n')", True),
    ("console.log = () => {}; process.stdout.write = () => true", False),
])
def test_code_under_test_cannot_forge_a_pass(code, tampered):
    task = first("bugfix")
    verdict = play(task, [_prepend(task, code), SUBMIT])
    assert verdict.outcome == 0.0, verdict
    assert verdict.parts["tampered"] == float(tampered), verdict.evidence


def test_the_bug_free_copy_bundled_with_npm_is_hidden():
    task = first("bugfix", "semver")
    copy = call("run_shell", command="cp -r /usr/lib/node_modules/npm/node_modules/semver/. . 2>&1; ls /usr/lib/node_modules/npm/node_modules/semver | wc -l")
    verdict, outputs = asyncio.run(_play(task, [copy, SUBMIT]))
    assert outputs[0].strip().endswith("0"), outputs[0]
    assert verdict.outcome == 0.0


def test_a_fast_but_wrong_perf_candidate_fails():
    task = first("perf")
    module = task.data["module"]
    gold = SweJsEnv().gold_solution(task)[:-1]
    wrong = call("run_shell", command=f"printf 'module.exports = () => 0\\n' >> {module}")
    verdict = play(task, [*gold, wrong, SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["speedup_ok"] == 0.0 and verdict.parts["p2p_passed"] < 1.0


@pytest.mark.slow
def test_a_perf_candidate_that_patches_the_clocks_fails():
    task = first("perf")
    clocks = ("Date.now = () => 0; performance.now = () => 0; process.hrtime.bigint = () => 0n; "
              "process.hrtime = () => [0, 0]")
    verdict = play(task, [_prepend(task, clocks), SUBMIT])
    assert verdict.outcome == 0.0 and verdict.parts["speedup_ok"] == 0.0, verdict
