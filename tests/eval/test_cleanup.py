"""A cleanup that fails must not lose the batch: `run_tasks` (and the trainer's rollouts, which
share `close_env`) keep every episode's result when an environment's close raises, and note it."""

from __future__ import annotations

import asyncio

from forgerl.agent.tools import close_env
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.envs.base import sample_task
from forgerl.eval import run as eval_run
from forgerl.types import Message, Trajectory, TrajectoryStatus


class CloseFails(ArithmeticEnv):
    """Arithmetic whose close raises like `shutil.rmtree` on a 3,000-deep tree."""

    closed = 0

    async def close(self) -> None:
        CloseFails.closed += 1
        raise RecursionError("maximum recursion depth exceeded")


def test_run_tasks_keeps_every_episode_when_a_close_raises(tokenizer, monkeypatch):
    fmt = get_format("minimax_m2")
    tasks = [sample_task("arithmetic", seed=s) for s in range(3)]
    monkeypatch.setattr(eval_run, "make_env", lambda family, index: CloseFails(index) if index == 1 else ArithmeticEnv(index))
    envs = [ArithmeticEnv(0) for _ in tasks]
    replies = []
    for env, task in zip(envs, tasks, strict=True):
        env.reset(task)
        replies += [fmt.render_assistant_body(Message(role="assistant", reasoning="ok", tool_calls=r))
                    for r in env.gold_solution(task)]
    engine = ScriptedEngine(tokenizer, replies)
    trajs = asyncio.run(eval_run.run_tasks(engine, fmt, "arithmetic", tasks, sampling=SamplingParams(max_tokens=400),
                                           max_turns=6, max_total_tokens=8000, concurrency=1, tool_timeout_s=5.0))
    assert len(trajs) == 3 and CloseFails.closed == 1
    assert [t.status for t in trajs] == [TrajectoryStatus.COMPLETED] * 3
    assert [t.reward for t in trajs] == [1.0, 1.0, 1.0]
    assert "RecursionError" in trajs[1].metadata["cleanup_error"]
    assert "cleanup_error" not in trajs[0].metadata


def test_close_env_never_raises_and_notes_the_failure():
    traj = Trajectory()
    asyncio.run(close_env(CloseFails(0), traj))
    assert traj.metadata["cleanup_error"].startswith("closing CloseFails failed with RecursionError")
