"""Tool-call checking and execution: schema problems found, calls run concurrently, every failure
turned into an observation with its boundary."""

from __future__ import annotations

import asyncio

import pytest

from forgerl.agent.tools import argument_problems, run_tool_call, run_tool_calls
from forgerl.errors import ToolError
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
