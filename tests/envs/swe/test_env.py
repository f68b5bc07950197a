"""The swe-bugfix environment: gold path scores 1, no-op scores 0 (on shipped tasks), the tools
behave, and nothing leaves the workspace."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from forgerl.envs.base import make_env, run_gold, sample_task
from forgerl.envs.swe import FAMILY, SweEnv, load_swe_tasks, swe_suite
from forgerl.envs.swe.env import SEARCH_WALL_S
from forgerl.envs.swe.pipeline import ISSUE_TEST_FILE
from forgerl.errors import ToolError
from forgerl.types import ToolCall, Trajectory


def sample(kind: str, n: int, seed: int = 0):
    tasks = load_swe_tasks(kind)
    return random.Random(seed).sample(tasks, min(n, len(tasks)))


def gold_score(task) -> float:
    async def go():
        async with SweEnv() as env:
            _, result = await run_gold(env, task)
            return result.score

    return asyncio.run(go())


def noop_score(task) -> float:
    async def go():
        async with SweEnv() as env:
            env.reset(task)
            await env.execute(ToolCall(name="submit"))
            return env.reward(Trajectory(task_id=task.id)).score

    return asyncio.run(go())


def call(env, name, **arguments):
    return asyncio.run(env.execute(ToolCall(name=name, arguments=arguments)))


@pytest.fixture
def env():
    task = next(t for t in load_swe_tasks("bugfix") if t.data["package"] == "inflection")
    environment = SweEnv()
    environment.reset(task)
    yield environment
    asyncio.run(environment.close())


def test_shipped_set_has_enough_tasks_from_enough_packages():
    bugfix = load_swe_tasks("bugfix")
    assert len(bugfix) >= 200
    assert len({t.data["package"] for t in bugfix}) >= 5
    assert len(load_swe_tasks("write_test")) == len(bugfix)
    assert len({t.id for t in load_swe_tasks()}) == len(load_swe_tasks())


def test_shipped_issues_do_not_leak_the_diff():
    for task in load_swe_tasks("bugfix"):
        mutation = task.data["mutation"]
        original = set(mutation["original"].splitlines())
        changed = [ln.strip() for ln in mutation["buggy"].splitlines() if ln not in original and ln.strip()]
        assert not any(line in task.data["issue"] for line in changed), task.id
        assert task.data["issue"] in task.prompt


def test_family_is_registered():
    env = make_env(FAMILY, 0)
    assert isinstance(env, SweEnv)
    assert sample_task(FAMILY, 3).id == swe_suite().split.train[3].id


@pytest.mark.parametrize("task", sample("bugfix", 5) + sample("write_test", 5), ids=lambda t: t.id)
def test_gold_scores_one_and_noop_zero(task):
    assert gold_score(task) == 1.0
    assert noop_score(task) == 0.0


@pytest.mark.slow
@pytest.mark.security  # the host-side judge and the masked answer key must keep every honest gold path at 1.0
@pytest.mark.parametrize("task", load_swe_tasks(), ids=lambda t: t.id)
def test_gold_and_noop_on_every_shipped_task(task):
    assert gold_score(task) == 1.0
    assert noop_score(task) == 0.0


def test_workspace_holds_buggy_package_and_only_pass_to_pass_tests(env):
    data = env.task.data
    visible = env._sandbox.read_file(data["test_file"])
    assert all(f"def {n}(" not in visible for n in data["f2p"])
    assert all(f"def {n}(" in visible for n in data["p2p"])
    out = call(env, "run_shell", command="python -c 'import inflection, os; print(os.path.relpath(inflection.__file__))'")
    assert "inflection/__init__.py" in out and "site-packages" not in out
    shell = call(env, "run_shell", command="python -m pytest tests -q")
    assert "exit code: 0" in shell and " passed" in shell


def test_edit_with_non_matching_or_ambiguous_old_text_is_a_clear_error(env):
    module = env.task.data["module"]
    with pytest.raises(ToolError, match="was not found"):
        call(env, "edit_file", path=module, old_text="this text is not in the file", new_text="x")
    with pytest.raises(ToolError, match="occurs .* times"):
        call(env, "edit_file", path=module, old_text="return", new_text="x")
    with pytest.raises(ToolError, match="line range"):
        call(env, "edit_file", path=module, start_line=5, end_line=10**6, new_text="x")
    with pytest.raises(ToolError, match="give old_text"):
        call(env, "edit_file", path=module, new_text="x")


def test_edit_by_lines_and_read_back(env):
    call(env, "write_file", path="notes/a.txt", content="one\ntwo\nthree\n")
    call(env, "edit_file", path="notes/a.txt", start_line=2, end_line=2, new_text="TWO")
    call(env, "edit_file", path="notes/a.txt", old_text="three", new_text="3")
    assert env._sandbox.read_file("notes/a.txt") == "one\nTWO\n3\n"
    shown = call(env, "read_file", path="notes/a.txt", start_line=2)
    assert "    2  TWO" in shown and "    1  one" not in shown


def test_paths_outside_the_workspace_are_refused(env):
    for bad in ("../secret.txt", "/etc/passwd", "a/../../x", "~/x"):
        with pytest.raises(ToolError, match="outside|absolute"):
            call(env, "read_file", path=bad)
    call(env, "run_shell", command="ln -s /etc escape")
    with pytest.raises(ToolError, match="outside"):
        call(env, "read_file", path="escape/hostname")
    with pytest.raises(ToolError, match="outside"):
        call(env, "write_file", path="escape/x", content="no")


def test_search_finds_lines_and_rejects_bad_regex(env):
    function = env.task.data["function"]
    hits = call(env, "search", pattern=rf"def {function}\(")
    assert env.task.data["module"] in hits
    with pytest.raises(ToolError, match="invalid regular expression"):
        call(env, "search", pattern="(unclosed")


def test_submit_ends_the_episode_and_unknown_tools_fail(env):
    with pytest.raises(ToolError, match="unknown tool"):
        call(env, "rm_rf")
    call(env, "submit")
    assert env.done
    with pytest.raises(ToolError, match="already submitted"):
        call(env, "read_file", path="pytest.ini")


def test_write_test_reward_needs_fail_on_buggy_and_pass_on_fixed():
    task = next(t for t in load_swe_tasks("write_test") if t.data["package"] == "inflection")

    async def score_with(content: str) -> float:
        async with SweEnv() as env:
            env.reset(task)
            await env.execute(ToolCall(name="write_file", arguments={"path": ISSUE_TEST_FILE, "content": content}))
            await env.execute(ToolCall(name="submit"))
            return env.reward(Trajectory(task_id=task.id)).score

    always_fails = "def test_x():\n    assert False\n"
    always_passes = "def test_x():\n    assert True\n"
    assert asyncio.run(score_with(always_fails)) == 0.0
    assert asyncio.run(score_with(always_passes)) == 0.0


def test_reset_twice_replaces_the_sandbox():
    first, second = load_swe_tasks("bugfix")[:2]
    env = SweEnv()
    env.reset(first)
    old_workspace = env._sandbox.workspace
    env.reset(second)
    assert not old_workspace.exists() and env._sandbox.workspace.exists()
    assert env.task is second and not env.done
    asyncio.run(env.close())


def test_a_catastrophic_regex_is_stopped_and_does_not_stall_the_event_loop(env):
    """(a+)+$ against a run of a's that ends in b backtracks exponentially: `re` in the server's
    process held the event loop (and the GIL) for as long as that took (issue 26, item 3)."""
    env._sandbox.write_file("slow.txt", "a" * 40 + "b\n")

    async def search_while_ticking() -> tuple[str, int, float]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        try:
            await env.execute(ToolCall(name="search", arguments={"pattern": "(a+)+$", "path": "slow.txt"}))
            outcome = "returned"
        except ToolError as exc:
            outcome = str(exc)
        finally:
            ticker.cancel()
        return outcome, ticks, time.monotonic() - started

    outcome, ticks, elapsed = asyncio.run(search_while_ticking())
    assert "took longer than" in outcome and "simplify the pattern" in outcome
    assert elapsed < SEARCH_WALL_S + 5
    assert ticks >= 10  # the loop kept running while the search did
