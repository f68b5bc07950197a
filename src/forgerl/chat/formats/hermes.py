"""The Hermes / Qwen3 chat format: ChatML blocks and JSON tool calls in `<tool_call>` tags.

    <|im_start|>system
    {system}

    # Tools ... <tools>
    {"type": "function", "function": {...}}
    </tools> ... <tool_call> instructions<|im_end|>
    <|im_start|>user
    {content}<|im_end|>
    <|im_start|>assistant
    <think>
    {reasoning}
    </think>

    {content}
    <tool_call>
    {"name": "N", "arguments": {...}}
    </tool_call><|im_end|>
    <|im_start|>user
    <tool_response>
    {result 1}
    </tool_response>
    <tool_response>
    {result 2}
    </tool_response><|im_end|>

The generation prompt is `<|im_start|>assistant\\n`; the model writes `<think>` itself, so a
message whose reasoning is None has no think block at all. With no system message and no tools
there is no system block. Reasoning before the last user message is dropped, as in M2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from forgerl.chat.base import register
from forgerl.chat.turns import RawCall, TurnFormat, excerpt, json_call, skip_ws
from forgerl.errors import ParseError
from forgerl.types import Message, ToolCall, ToolSpec

_CALL_OPEN = "<tool_call>"
_CALL_CLOSE = "</tool_call>"

_TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


@register
class HermesFormat(TurnFormat):
    name: ClassVar[str] = "hermes"
    special_tokens: ClassVar[tuple[str, ...]] = (
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
        _CALL_OPEN,
        _CALL_CLOSE,
        "<tool_response>",
        "</tool_response>",
    )
    end_of_message: ClassVar[str] = "<|im_end|>"
    think_start: ClassVar[str] = "<think>"
    think_end: ClassVar[str] = "</think>"
    prompt_opens_think: ClassVar[bool] = False
    tool_call_start: ClassVar[str] = _CALL_OPEN

    assistant_header: ClassVar[str] = "<|im_start|>assistant\n"
    call_markers: ClassVar[tuple[str, ...]] = (_CALL_CLOSE,)

    def _system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        text = system or ""
        if tools:
            listing = "".join("\n" + json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
            text = (text + "\n\n" if text else "") + _TOOLS_INTRO + listing + _TOOLS_OUTRO
        return f"<|im_start|>system\n{text}<|im_end|>\n"

    def _user_block(self, message: Message) -> str:
        return f"<|im_start|>user\n{message.content}<|im_end|>\n"

    def _tool_block(self, messages: Sequence[Message]) -> str:
        body = "\n".join(f"<tool_response>\n{m.content}\n</tool_response>" for m in messages)
        return f"<|im_start|>user\n{body}<|im_end|>\n"

    def _render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "".join(
            f"\n{_CALL_OPEN}\n"
            + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
            + f"\n{_CALL_CLOSE}"
            for c in calls
        )

    def _parse_calls(self, text: str, start: int) -> list[RawCall]:
        calls: list[RawCall] = []
        pos = start
        while pos < len(text):
            if not text.startswith(_CALL_OPEN, pos):
                raise ParseError(f"text after the tool calls: {excerpt(text, pos)}")
            body_start = pos + len(_CALL_OPEN)
            end = text.find(_CALL_CLOSE, body_start)
            if end < 0:
                raise ParseError(f"unclosed {_CALL_OPEN}: no {_CALL_CLOSE}")
            where = f"tool call {len(calls) + 1}"
            payload = text[body_start:end]
            if _CALL_OPEN in payload:
                raise ParseError(f"{where}: nested {_CALL_OPEN}")
            try:
                obj = json.loads(payload)
            except (ValueError, RecursionError) as e:
                raise ParseError(f"{where}: bad JSON inside {_CALL_OPEN}: {e}") from None
            calls.append(json_call(obj, where))
            pos = skip_ws(text, end + len(_CALL_CLOSE))
        return calls
