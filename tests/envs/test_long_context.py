"""tool-reasoning-long (issue 24 item 4): its results overflow the context unless it is managed."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.context import ContextActions, FixedContext
from forgerl.agent.loop import run_episode
from forgerl.agent.replay import check_replay
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import family_info, make_env, play_rounds, run_gold
from forgerl.envs.long_context import FAMILY, generate_task
from forgerl.envs.tool_reasoning import generate_task as short_task
from forgerl.train.sft_context import managed_replies, played_cleanly
from forgerl.types import ToolCall, TrajectoryStatus

CONTEXT = 2048  # the main job's max_context
TURN = 320  # new tokens per turn: the solver's longest turn (three lookups and a context call) fits


def test_same_task_as_tool_reasoning_with_long_results():
    task, short = generate_task(4, 3), short_task(4, 3)
    assert task.family == FAMILY and task.id == f"{FAMILY}-d3-4"
    assert task.prompt == short.prompt and task.answer == short.answer
    assert generate_task(4, 3) == task  # deterministic
    env = make_env(FAMILY)
    env.reset(task)
    item = sorted(task.data["db"]["price"])[0]
    out = env.run(ToolCall(name="lookup", arguments={"table": "price", "item": item}))
    first, *trail = out.splitlines()
    assert first.strip().lstrip("-").isdigit() and len(trail) == 1 + task.data["trail_lines"]


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_gold_scores_one_and_noop_zero(difficulty):
    task = generate_task(difficulty, difficulty)
    _, result = asyncio.run(run_gold(make_env(FAMILY), task))
    assert result.score == 1.0
    _, noop = asyncio.run(play_rounds(make_env(FAMILY), task, family_info(FAMILY).noop, refused_ok=True))
    assert noop.score == 0.0


def solver_replies(fmt, task) -> list[str]:
    """The scripted solver's own turns (its thinking notes each value it read), as the policy writes them."""
    return [fmt.render_assistant_body(m) for m in make_env(FAMILY).gold_messages(task) if m.role == "assistant"]


def play(task, replies, manager, fmt, tokenizer):
    return asyncio.run(run_episode(ScriptedEngine(tokenizer, replies, max_context=CONTEXT), fmt, make_env(FAMILY), task,
                                   sampling=SamplingParams(max_tokens=TURN), max_turns=8, max_total_tokens=CONTEXT,
                                   context_manager=manager))


@pytest.mark.parametrize(("seed", "difficulty"), [(0, 2), (2, 2), (1, 3), (4, 3)])
def test_keeping_everything_truncates_and_managing_the_context_finishes(seed, difficulty, tokenizer):
    fmt = get_format("minimax_m2")
    task = generate_task(seed, difficulty)
    kept = play(task, solver_replies(fmt, task), None, fmt, tokenizer)
    assert kept.status == TrajectoryStatus.TRUNCATED and kept.reward == 0.0
    fixed = play(task, solver_replies(fmt, task), FixedContext("keep_last_turns", 1024, turns=1), fmt, tokenizer)
    assert played_cleanly(fixed) and fixed.reward == 1.0
    assert fixed.metadata["context_rewrites"] and check_replay(fixed, tokenizer, fmt) == []
    gold = make_env(FAMILY).gold_messages(task)
    acted = play(task, managed_replies(fmt, gold, "keep_last_turns"), ContextActions(["keep_last_turns"]), fmt, tokenizer)
    assert played_cleanly(acted) and acted.reward == 1.0 and {r["by"] for r in acted.metadata["context_rewrites"]} == {"policy"}
    assert check_replay(acted, tokenizer, fmt) == []


def test_gold_messages_carry_the_trails_the_environment_writes():
    task = generate_task(3, 2)
    env = make_env(FAMILY)
    env.reset(task)
    results = []
    for message in env.gold_messages(task):
        if message.role == "assistant":
            results += [env.run(call) for call in message.tool_calls]
    gold_tools = [m.content for m in env.gold_messages(task) if m.role == "tool"]
    assert gold_tools == results and all("audit trail" in r for r in results[:-1])
