"""The slow tier: gold scores 1 and the no-op 0 on EVERY shipped swe-js task (both sides of the
split), and every perf task's gold clears the perf rule in repeated validations (the issue asks
>= 95% of them). Run with `pytest -m slow tests/envs/swe_js/test_validate_all.py`."""

from __future__ import annotations

import asyncio
import os

import pytest

from forgerl.envs.base import Task, Verdict
from forgerl.envs.swe_js import SweJsEnv, load_swe_js_tasks
from forgerl.types import ToolCall

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]
PERF_REPEATS = int(os.environ.get("FORGERL_SWE_JS_PERF_REPEATS", "3"))


async def _play(task: Task, rounds: list[list[ToolCall]]) -> Verdict:
    env = SweJsEnv()
    env.reset(task)
    try:
        for calls in rounds:
            for call in calls:
                await env.execute(call)
        return env.verify(None)  # type: ignore[arg-type]
    finally:
        await env.close()


async def _validate(tasks: list[Task]) -> list[str]:
    problems = []
    for task in tasks:
        gold = await _play(task, SweJsEnv().gold_solution(task))
        noop = await _play(task, [[ToolCall(name="submit", arguments={})]])
        if gold.outcome != 1.0:
            problems.append(f"{task.id}: gold {gold.parts} {str(gold.evidence)[:300]}")
        if noop.outcome != 0.0:
            problems.append(f"{task.id}: no-op {noop.parts}")
    return problems


def test_every_task_gold_one_noop_zero():
    tasks = load_swe_js_tasks()
    problems = asyncio.run(_validate(tasks))
    assert not problems, f"{len(problems)} of {len(tasks)} tasks fail validation: {problems[:10]}"


def test_perf_gold_clears_the_rule_in_repeated_validations():
    tasks = load_swe_js_tasks("perf")

    async def go() -> list[float]:
        speedups = []
        for _ in range(PERF_REPEATS):
            for task in tasks:
                verdict = await _play(task, SweJsEnv().gold_solution(task))
                speedups.append(verdict.parts["speedup_ok"] * verdict.outcome)
        return speedups

    results = asyncio.run(go())
    assert len(results) >= 3 * len(tasks) and sum(results) / len(results) >= 0.95, results
