"""Tool-call checking and execution: schema problems found, calls run concurrently, every failure
turned into an observation with its boundary."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from forgerl.agent.tools import (
    DEFAULT_TOOL_TIMEOUT_S,
    argument_problems,
    release_tool_thread,
    run_tool_call,
    run_tool_calls,
    tool_thread_for,
)
from forgerl.errors import SandboxError, ToolError, VerifierError
from forgerl.types import Boundary, ToolCall, ToolSpec

SPEC = ToolSpec(
    name="lookup",
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "score": {"type": "number"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "tags": {"type": ["array", "null"]},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"query": "x", "limit": 3, "score": 0.5, "unit": "c", "tags": None}, None),
        ({"query": "x", "limit": 3.0}, None),  # an integral float is an integer in JSON
        ({}, "missing required argument 'query'"),
        ({"query": 3}, "argument 'query' must be of type string"),
        ({"query": "x", "score": True}, "argument 'score' must be of type number"),
        ({"query": "x", "limit": 2.5}, "argument 'limit' must be of type integer"),
        ({"query": "x", "unit": "k"}, "must be one of ['c', 'f']"),
        ({"query": "x", "tags": "a,b"}, "argument 'tags' must be of type ['array', 'null']"),
        ({"query": "x", "extra": 1}, "unexpected argument 'extra'"),
    ],
)
def test_argument_problems(arguments, problem):
    problems = argument_problems(SPEC, arguments)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


class Env:
    """Tools that prove concurrency: `wait` blocks until `release` has run."""

    def __init__(self):
        self.released = asyncio.Event()

    async def execute(self, call: ToolCall) -> str:
        if call.name == "wait":
            await asyncio.wait_for(self.released.wait(), 2.0)
            return "released"
        if call.name == "release":
            self.released.set()
            return "ok"
        if call.name == "fail":
            raise ToolError("no such record")
        if call.name == "sleep":
            await asyncio.sleep(5)
        raise ValueError("boom")


TOOLS = [ToolSpec(name=n) for n in ("wait", "release", "fail", "sleep", "crash")]


def test_calls_run_concurrently_and_results_keep_call_order():
    async def go():
        calls = [ToolCall(name="wait"), ToolCall(name="release")]
        return await run_tool_calls(Env(), calls, TOOLS, turn=0)

    outcomes = asyncio.run(go())  # sequential execution would time out inside `wait`
    assert [o.message.content for o in outcomes] == ["released", "ok"]
    assert all(o.failure is None for o in outcomes)


@pytest.mark.parametrize(
    ("name", "text", "boundary"),
    [
        ("fail", "Error: no such record", Boundary.TOOL),
        ("crash", "Error: tool crash failed with ValueError: boom", Boundary.TOOL),
        ("sleep", "Error: tool sleep timed out after 0.05 s", Boundary.TIMEOUT),
        ("nope", "Error: unknown tool 'nope'. Available tools: wait, release, fail, sleep, crash.", Boundary.TOOL),
    ],
)
def test_failures_become_observations(name, text, boundary):
    call = ToolCall(name=name)
    outcome = asyncio.run(run_tool_call(Env(), call, TOOLS, turn=4, timeout_s=0.05))
    assert outcome.message.content == text
    assert outcome.message.role == "tool" and outcome.message.tool_call_id == call.id and outcome.message.name == name
    assert outcome.failure.boundary == boundary and outcome.failure.turn == 4


class BlockingEnv:
    """A tool that does synchronous work inside `execute`: it holds whatever loop runs it."""

    def __init__(self, kind: str, seconds: float = 3.0):
        self.kind, self.seconds = kind, seconds
        self.stop = threading.Event()

    async def execute(self, call: ToolCall) -> str:
        end = time.monotonic() + self.seconds
        if self.kind == "sleep":
            time.sleep(self.seconds)
        else:  # a busy loop, like a catastrophic regex (it lets go once the test is over)
            while time.monotonic() < end and not self.stop.is_set():
                pass
        return "done"


@pytest.mark.parametrize("kind", ["sleep", "busy"])
def test_a_blocking_tool_times_out_on_time_while_the_loop_keeps_running(kind):
    env = BlockingEnv(kind)

    async def go():
        ticks = 0

        async def other_session():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        other = asyncio.create_task(other_session())
        start = time.monotonic()
        outcome = await run_tool_call(env, ToolCall(name="block"), [ToolSpec(name="block")], turn=0, timeout_s=0.5)
        elapsed = time.monotonic() - start
        other.cancel()
        return outcome, elapsed, ticks

    try:
        outcome, elapsed, ticks = asyncio.run(go())
    finally:
        env.stop.set()
    assert outcome.failure is not None and outcome.failure.boundary == Boundary.TIMEOUT
    assert outcome.message.content == "Error: tool block timed out after 0.5 s"
    assert elapsed < 1.0, f"the timeout fired after {elapsed:.2f} s"
    assert ticks >= 10, f"another coroutine ran only {ticks} times in {elapsed:.2f} s: the loop was blocked"


def test_the_default_tool_timeout_is_used_by_the_agent_loop():
    import inspect

    from forgerl.agent.loop import run_episode

    default = inspect.signature(run_episode).parameters["tool_timeout_s"].default
    assert default == DEFAULT_TOOL_TIMEOUT_S and 120 < DEFAULT_TOOL_TIMEOUT_S < 3600


def test_tool_thread_is_released_and_a_caller_loop_env_runs_inline():
    env = Env()

    async def go():
        await run_tool_call(env, ToolCall(name="release"), TOOLS, turn=0)
        worker = tool_thread_for(env)
        release_tool_thread(env)
        worker.thread.join(2.0)
        return worker

    worker = asyncio.run(go())
    assert not worker.thread.is_alive()

    class InlineEnv(Env):
        tools_on_caller_loop = True

        async def execute(self, call):
            return str(threading.current_thread() is threading.main_thread())

    outcome = asyncio.run(run_tool_call(InlineEnv(), ToolCall(name="wait"), TOOLS, turn=0))
    assert outcome.message.content == "True"


@pytest.mark.parametrize(
    ("exc", "boundary"),
    [(SandboxError("the sandbox could not start"), Boundary.SANDBOX),
     (VerifierError("the hidden tests could not run"), Boundary.VERIFIER)],
)
def test_infrastructure_errors_under_a_tool_keep_their_boundary(exc, boundary):
    class BrokenEnv:
        async def execute(self, call):
            raise exc

    outcome = asyncio.run(run_tool_call(BrokenEnv(), ToolCall(name="fail"), TOOLS, turn=2))
    assert outcome.failure is not None and outcome.failure.boundary == boundary
    assert "infrastructure failure" in outcome.message.content


class _CountsInFlight:
    """Records how many calls of its round were already in flight when each one started."""

    def __init__(self) -> None:
        self.in_flight, self.slots = 0, []

    async def execute(self, call: ToolCall) -> str:
        self.slots.append(self.in_flight)
        self.in_flight += 1
        try:
            await asyncio.sleep(0)
            return "ok"
        finally:
            self.in_flight -= 1


def test_a_rounds_parallel_calls_start_together_on_the_tool_thread():
    """Deterministic rounds: every call of a round starts before any finishes, every time (one
    submission per call let the first finish before the next started, at random)."""
    from forgerl.agent.tools import close_env, run_tool_calls

    spec = ToolSpec(name="t", description="", parameters={"type": "object", "properties": {}})
    calls = [ToolCall(name="t", arguments={}) for _ in range(4)]

    async def rounds() -> list[list[int]]:
        seen = []
        for _ in range(30):
            env = _CountsInFlight()
            outcomes = await run_tool_calls(env, calls, [spec], turn=0, timeout_s=5)
            assert [o.message.content for o in outcomes] == ["ok"] * 4
            seen.append(env.slots)
            await close_env(env)
        return seen

    assert asyncio.run(rounds()) == [[0, 1, 2, 3]] * 30
