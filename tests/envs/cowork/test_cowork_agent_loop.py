"""The cowork gold path played by a scripted model through the real agent loop and chat formats:
tool calls are rendered to completion text, parsed back (values typed through the tools' JSON
schemas, e.g. write_cell's number-or-string value) and executed, and the episode scores 1.0."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.base import make_env
from forgerl.envs.cowork import generate_task
from forgerl.types import Message, TrajectoryStatus


@pytest.mark.parametrize("chat_format", ["minimax_m2", "hermes"])
@pytest.mark.parametrize(("seed", "difficulty"), [(3, 1), (2, 1), (0, 2), (2, 2), (0, 3)])
def test_gold_through_the_agent_loop_scores_one(tokenizer, chat_format, seed, difficulty):
    fmt = get_format(chat_format)
    task = generate_task(seed, difficulty)
    replies = [
        fmt.render_assistant_body(Message(role="assistant", reasoning="Next step of my plan.", tool_calls=round_))
        for round_ in task.gold
    ]
    trajectory = asyncio.run(
        run_episode(ScriptedEngine(tokenizer, replies), fmt, make_env("cowork"), task,
                    sampling=SamplingParams(max_tokens=800), max_turns=len(replies), max_total_tokens=16000)
    )
    assert trajectory.status == TrajectoryStatus.COMPLETED and not trajectory.errors, trajectory.errors
    assert trajectory.reward == 1.0, trajectory.reward_breakdown
    written = [c for m in trajectory.messages for c in m.tool_calls if c.name == "write_cell"]
    gold_written = [c for r in task.gold for c in r if c.name == "write_cell"]
    assert [c.arguments for c in written] == [c.arguments for c in gold_written]  # typed back exactly
