"""The terminal family's test helper: play tool calls on a task, then submit, and score it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from forgerl.envs.base import RewardResult, Task, make_env, play_rounds
from forgerl.types import ToolCall


@pytest.fixture
def play() -> Callable[..., RewardResult]:
    """play(task, *calls) -> the reward of running each call in turn, then `submit`."""

    def run(task: Task, *calls: ToolCall) -> RewardResult:
        async def main() -> RewardResult:
            env = make_env("terminal")
            try:
                rounds = [[c] for c in calls] + [[ToolCall(name="submit", arguments={})]]
                _, result = await play_rounds(env, task, lambda _t: rounds, refused_ok=True)
                return result
            finally:
                await env.close()

        return asyncio.run(main())

    return run
