"""Gateway tools follow the white-box loop's rules: a sandbox or verifier failure under a tool ends
the session FAILED at that boundary (no reward, nothing charged to the agent); a close that raises
never loses the stored trajectory; the tool timeout is the agent loop's default."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.tools import DEFAULT_TOOL_TIMEOUT_S
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.errors import SandboxError, VerifierError
from forgerl.gateway.core import Gateway
from forgerl.types import Boundary, ToolCall, TrajectoryStatus


class SubmitBreaks(ArithmeticEnv):
    def __init__(self, exc: Exception | None = None, close_exc: Exception | None = None) -> None:
        super().__init__(3)
        self.exc, self.close_exc = exc, close_exc

    async def execute(self, call: ToolCall) -> str:
        if call.name == "submit_answer" and self.exc is not None:
            raise self.exc
        return await super().execute(call)

    async def close(self) -> None:
        if self.close_exc is not None:
            raise self.close_exc


def _session(gateway: Gateway, env: ArithmeticEnv):
    opened = gateway.open_session(family="arithmetic", seed=0)
    opened.session.env = env  # the family's env, replaced by one whose submit or close breaks
    return opened.session


@pytest.mark.parametrize(("exc", "boundary"), [(SandboxError("sandbox could not start"), Boundary.SANDBOX),
                                               (VerifierError("verifier crashed"), Boundary.VERIFIER)])
def test_an_infrastructure_failure_under_a_tool_ends_the_session_failed(m2_tokenizer, m2_format, exc, boundary):
    gateway = Gateway(ScriptedEngine(m2_tokenizer, ["x"]), m2_format)
    session = _session(gateway, SubmitBreaks(exc))
    text, is_error = asyncio.run(gateway.call_tool(session, "submit_answer", {"answer": 4}))
    assert is_error and session.ended and session.id not in gateway.sessions
    traj = gateway.finished[session.id]
    assert traj.status == TrajectoryStatus.FAILED and traj.reward is None
    assert traj.failure.boundary == boundary and str(exc) in traj.failure.message
    assert traj.errors == []  # not the agent's error


def test_a_close_that_raises_keeps_the_trajectory(m2_tokenizer, m2_format):
    gateway = Gateway(ScriptedEngine(m2_tokenizer, ["x"]), m2_format)
    session = _session(gateway, SubmitBreaks(close_exc=RecursionError("maximum recursion depth exceeded")))
    traj = asyncio.run(gateway.end_session(session))
    assert gateway.finished[session.id] is traj
    assert "RecursionError" in traj.metadata["cleanup_error"]


def test_the_gateway_tool_timeout_is_the_agent_loops_default(m2_tokenizer, m2_format):
    assert Gateway(ScriptedEngine(m2_tokenizer, ["x"]), m2_format).tool_timeout_s == DEFAULT_TOOL_TIMEOUT_S
