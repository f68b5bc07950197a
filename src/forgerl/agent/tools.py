"""Running the tool calls of one completion: check them against their specs, run them in parallel,
and turn every failure into an observation the model reads (contract 4: a bad call is data).

Argument checking covers what models actually get wrong (a missing required key, an unknown key
where the schema forbids extras, a string where a number was declared, a value outside an enum)
without pulling in a JSON-schema library for the core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from forgerl.errors import ToolError
from forgerl.types import Boundary, Failure, Message, ToolCall, ToolSpec

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, declared: str | list[str]) -> bool:
    names = [declared] if isinstance(declared, str) else list(declared)
    for name in names:
        if name not in _JSON_TYPES:
            return True  # a type this checker does not know: let the tool decide
        if isinstance(value, bool) and name in ("integer", "number"):
            continue  # JSON booleans are not numbers, although Python's bool is an int
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
        if isinstance(value, _JSON_TYPES[name]):
            return True
    return False


def argument_problems(spec: ToolSpec, arguments: dict[str, Any]) -> list[str]:
    """What is wrong with `arguments` for `spec` (empty when they are acceptable)."""
    schema = spec.parameters or {}
    properties: dict[str, Any] = schema.get("properties", {})
    problems = [f"missing required argument {key!r}" for key in schema.get("required", []) if key not in arguments]
    for key, value in arguments.items():
        prop = properties.get(key)
        if prop is None:
            if schema.get("additionalProperties", True) is False:
                problems.append(f"unexpected argument {key!r} (accepted: {', '.join(properties) or 'none'})")
            continue
        if "type" in prop and not _type_ok(value, prop["type"]):
            problems.append(f"argument {key!r} must be of type {prop['type']}, got {type(value).__name__} {value!r}")
        elif "enum" in prop and value not in prop["enum"]:
            problems.append(f"argument {key!r} must be one of {prop['enum']}, got {value!r}")
    return problems


@dataclass
class ToolOutcome:
    """One executed call: the tool message the model will read, and the failure if there was one."""

    message: Message
    failure: Failure | None = None


class ToolExecutor(Protocol):
    """The slice of `envs.base.Environment` this module needs."""

    async def execute(self, call: ToolCall) -> str: ...


def _error(call: ToolCall, boundary: Boundary, text: str, turn: int) -> ToolOutcome:
    message = Message(role="tool", content=f"Error: {text}", tool_call_id=call.id, name=call.name)
    return ToolOutcome(message, Failure(boundary=boundary, message=f"{call.name}: {text}", turn=turn))


async def run_tool_call(
    env: ToolExecutor, call: ToolCall, tools: Sequence[ToolSpec], turn: int, timeout_s: float | None = None
) -> ToolOutcome:
    """Validate and run one call; never raises (except cancellation), whatever the tool does."""
    spec = next((t for t in tools if t.name == call.name), None)
    if spec is None:
        available = ", ".join(t.name for t in tools) or "none"
        return _error(call, Boundary.TOOL, f"unknown tool {call.name!r}. Available tools: {available}.", turn)
    problems = argument_problems(spec, call.arguments)
    if problems:
        return _error(call, Boundary.TOOL, f"invalid arguments for {call.name}: {'; '.join(problems)}.", turn)
    try:
        output = await asyncio.wait_for(env.execute(call), timeout_s)
    except ToolError as exc:
        return _error(call, Boundary.TOOL, str(exc), turn)
    except TimeoutError:
        return _error(call, Boundary.TIMEOUT, f"tool {call.name} timed out after {timeout_s} s", turn)
    except Exception as exc:  # a crashing tool is the tool's failure, not the rollout's
        return _error(call, Boundary.TOOL, f"tool {call.name} failed with {type(exc).__name__}: {exc}", turn)
    return ToolOutcome(Message(role="tool", content=str(output), tool_call_id=call.id, name=call.name))


async def run_tool_calls(
    env: ToolExecutor, calls: Sequence[ToolCall], tools: Sequence[ToolSpec], turn: int, timeout_s: float | None = None
) -> list[ToolOutcome]:
    """All calls of one completion concurrently (M2's parallel tool calls); results in call order."""
    return list(await asyncio.gather(*(run_tool_call(env, c, tools, turn, timeout_s) for c in calls)))
