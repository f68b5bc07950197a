"""OpenAI request shapes -> forgerl Messages and ToolSpecs.

Kept apart from the HTTP layer so the mapping rules (tool-call arguments are JSON strings on the
wire but dicts in forgerl; reasoning may come as `reasoning_content`, `reasoning` or an inline
`<think>` block) can be read and tested on their own. Every problem raises `RequestError`, which
the app turns into a 400 naming the offending field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from forgerl.server.protocol import ChatMessageIn, ToolIn
from forgerl.types import Message, ToolCall, ToolSpec, new_id

# OpenAI's own rule for function names; rejecting others early beats a confusing render.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_JSON_SCHEMA_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


class RequestError(Exception):
    """A client mistake: becomes an OpenAI-style error with `status` (4xx)."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code
        self.type = type_


def _text_of(content: str | list[dict[str, Any]] | None, param: str) -> str:
    """Plain text of a message content: a string, or a list of text parts (others rejected)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out: list[str] = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "input_text") or not isinstance(part.get("text"), str):
            raise RequestError(
                f"content part of type {kind!r} is not supported; only text parts are", param=f"{param}[{i}]"
            )
        out.append(part["text"])
    return "".join(out)


def split_inline_think(content: str, think_start: str, think_end: str) -> tuple[str | None, str]:
    """`<think>r</think>c` at the start of assistant content -> ("r", "c"); otherwise (None, content).

    Clients that only know `content` (they drop `reasoning_content`) send the thinking back this way;
    splitting it lets the chat format apply the interleaved-thinking rule to it like to any reasoning.
    """
    stripped = content.lstrip()
    if not stripped.startswith(think_start):
        return None, content
    end = stripped.find(think_end, len(think_start))
    if end < 0:
        return None, content
    reasoning = stripped[len(think_start) : end].strip()
    return reasoning, stripped[end + len(think_end) :].lstrip()


def _parse_arguments(raw: str | dict[str, Any], param: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestError(f"tool call arguments are not valid JSON: {exc}", param=param) from None
    if not isinstance(value, dict):
        raise RequestError(f"tool call arguments must be a JSON object, got {type(value).__name__}", param=param)
    return value


def to_messages(messages: list[ChatMessageIn], think_start: str, think_end: str) -> list[Message]:
    """Convert request messages. Tool messages get the tool name looked up from the call id."""
    out: list[Message] = []
    call_names: dict[str, str] = {}
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        content = _text_of(m.content, f"{param}.content")
        try:
            if m.role in ("system", "developer"):
                out.append(Message(role="system", content=content))
            elif m.role == "user":
                out.append(Message(role="user", content=content))
            elif m.role == "tool":
                name = m.name or (call_names.get(m.tool_call_id) if m.tool_call_id else None)
                out.append(Message(role="tool", content=content, tool_call_id=m.tool_call_id, name=name))
            else:
                reasoning = m.reasoning_content if m.reasoning_content is not None else m.reasoning
                if reasoning is None and think_start:
                    reasoning, content = split_inline_think(content, think_start, think_end)
                calls: list[ToolCall] = []
                for j, tc in enumerate(m.tool_calls or []):
                    args = _parse_arguments(tc.function.arguments, f"{param}.tool_calls[{j}].function.arguments")
                    call = ToolCall(id=tc.id or new_id("call"), name=tc.function.name, arguments=args)
                    call_names[call.id] = call.name
                    calls.append(call)
                out.append(Message(role="assistant", content=content, reasoning=reasoning, tool_calls=calls))
        except ValidationError as exc:
            raise RequestError(f"invalid message: {exc.errors()[0]['msg']}", param=param) from None
    return out


def to_tool_specs(tools: list[ToolIn] | None) -> list[ToolSpec]:
    """OpenAI function tools -> ToolSpecs, rejecting schemas a chat format could not render."""
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools or []):
        fn = tool.function
        param = f"tools[{i}].function"
        if not _TOOL_NAME.match(fn.name):
            raise RequestError(
                f"invalid tool name {fn.name!r}: use 1-64 letters, digits, '_', '-' or '.'", param=f"{param}.name"
            )
        if fn.name in seen:
            raise RequestError(f"duplicate tool name {fn.name!r}", param=f"{param}.name")
        seen.add(fn.name)
        params = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        _check_schema(params, f"{param}.parameters")
        if params.get("type") != "object":
            raise RequestError(
                f"tool parameters must be a JSON schema of type 'object', got type {params.get('type')!r}",
                param=f"{param}.parameters",
            )
        specs.append(ToolSpec(name=fn.name, description=fn.description or "", parameters=params))
    return specs


def _check_schema(schema: Any, param: str) -> None:
    """A light structural check of a JSON schema: enough to catch typos that break parsing later."""
    if not isinstance(schema, dict):
        raise RequestError(f"a JSON schema must be an object, got {type(schema).__name__}", param=param)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_SCHEMA_TYPES:
            raise RequestError(f"unknown JSON schema type {k!r}", param=f"{param}.type")
    props = schema.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise RequestError("'properties' must be an object", param=f"{param}.properties")
        for name, sub in props.items():
            _check_schema(sub, f"{param}.properties.{name}")
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise RequestError("'required' must be a list of property names", param=f"{param}.required")
    if "items" in schema and isinstance(schema["items"], dict):
        _check_schema(schema["items"], f"{param}.items")
