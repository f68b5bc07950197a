"""Contract 4 under a tool: when the sandbox or verifier fails beneath a tool call (the verifier's
sandbox cannot start at `submit`), the episode is FAILED at that boundary with no reward — not a
`truncated` zero with a tool error charged to the agent. A bad request to the sandbox (a path that
escapes the workspace) stays the agent's tool error."""

from __future__ import annotations

import asyncio
import random

import pytest

from forgerl.agent.loop import run_episode
from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.errors import SandboxError, VerifierError
from forgerl.types import Boundary, Message, ToolCall, Trajectory, TrajectoryStatus


def replies(fmt, rounds: list[list[ToolCall]]) -> list[str]:
    return [fmt.render_assistant_body(Message(role="assistant", reasoning="Working.", tool_calls=r)) for r in rounds]


def play(tokenizer, fmt, env, task, rounds, max_turns: int = 8) -> Trajectory:
    engine = ScriptedEngine(tokenizer, replies(fmt, rounds))
    return asyncio.run(run_episode(engine, fmt, env, task, sampling=SamplingParams(max_tokens=400),
                                   max_turns=max_turns, max_total_tokens=8000))


class SubmitInfraFails(ArithmeticEnv):
    """Arithmetic whose `submit_answer` hits a broken sandbox or verifier."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(3)
        self.exc = exc

    async def execute(self, call: ToolCall) -> str:
        if call.name == "submit_answer":
            raise self.exc
        return await super().execute(call)


@pytest.mark.parametrize(
    ("exc", "boundary"),
    [(SandboxError("could not start the sandboxed command"), Boundary.SANDBOX),
     (VerifierError("the verifier crashed"), Boundary.VERIFIER)],
)
def test_infrastructure_failure_at_submit_fails_the_episode_without_reward(tokenizer, task, exc, boundary):
    fmt = get_format("minimax_m2")
    env = SubmitInfraFails(exc)
    traj = play(tokenizer, fmt, env, task, env.gold_solution(task))
    assert traj.status == TrajectoryStatus.FAILED, traj.end_reason
    assert traj.reward is None and traj.reward_breakdown == {}
    assert traj.failure is not None and traj.failure.boundary == boundary
    assert str(exc) in traj.failure.message and "submit_answer" in traj.failure.message
    assert traj.errors == []  # nothing charged to the agent
    assert len(traj.calls) == 3  # the episode ended at the failing round, the record kept


def test_swe_gold_path_with_a_verifier_sandbox_that_cannot_start_is_failed(tokenizer, monkeypatch):
    import importlib

    from forgerl.envs.swe import SweEnv, load_swe_tasks

    def no_sandbox(*args, **kwargs):
        raise SandboxError("the sandbox could not start: no working backend")

    # every verifier-side sandbox factory (the agent's own workspace, made at reset, still works)
    patched = 0
    for name in ("forgerl.envs.swe.verify", "forgerl.envs.swe.judge"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "new_sandbox"):
            monkeypatch.setattr(module, "new_sandbox", no_sandbox)
            patched += 1
    assert patched
    task = random.Random(0).choice([t for t in load_swe_tasks("bugfix") if t.data["package"] == "inflection"])
    fmt = get_format("minimax_m2")
    env = SweEnv()
    gold = env.gold_solution(task)
    try:  # max_turns = the gold path's length: before the fix this ended TRUNCATED with reward 0
        traj = play(tokenizer, fmt, env, task, gold, max_turns=len(gold))
    finally:
        asyncio.run(env.close())
    assert traj.status == TrajectoryStatus.FAILED, (traj.status, traj.end_reason)
    assert traj.reward is None
    assert traj.failure is not None and traj.failure.boundary == Boundary.SANDBOX
    assert "submit" in traj.failure.message and "no working backend" in traj.failure.message
    assert traj.errors == []
    assert "never called submit" not in str(traj.metadata)


def test_a_path_escaping_the_sandbox_stays_the_agents_tool_error(tokenizer):
    """The sandbox's refusals of a bad request are ToolErrors as well as SandboxErrors."""
    from forgerl.envs.sandbox import create_sandbox
    from forgerl.errors import ToolError

    async def go():
        async with create_sandbox() as sb:
            for bad in ("../outside.txt", "/etc/passwd", ""):
                with pytest.raises(ToolError):
                    sb.write_file(bad, "x")
            with pytest.raises(ToolError):
                await sb.run("   ")

    asyncio.run(go())
