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

Markers inside text (issue 27): free text (content, reasoning, user/system text, tool responses)
gets U+2060 after the first character of each marker it contains (forgerl.chat.escape); JSON
(calls, tool listing) writes that character as a JSON `\\u` escape instead, so the call stays
standard JSON that any Hermes parser reads back exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from forgerl.chat.base import register_format
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


@register_format
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
    extra_markers: ClassVar[tuple[str, ...]] = ("</tools>",)

    def system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        listing = ""
        if tools:
            lines = "".join("\n" + self.dumps_json(t.to_openai(), f"tool {t.name!r}") for t in tools)
            listing = _TOOLS_INTRO + lines + _TOOLS_OUTRO
        head = "<|im_start|>system\n"
        text = self.escape_text(system or "", head, ("\n\n" + listing if listing else "") + "<|im_end|>")
        if listing:
            text = (text + "\n\n" if text else "") + listing
        return f"{head}{text}<|im_end|>\n"

    def user_block(self, message: Message) -> str:
        return self.wrap("<|im_start|>user\n", message.content, "<|im_end|>\n")

    def tool_block(self, messages: Sequence[Message]) -> str:
        body = "\n".join(self.wrap("<tool_response>\n", m.content, "\n</tool_response>") for m in messages)
        return f"<|im_start|>user\n{body}<|im_end|>\n"

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "".join(
            f"\n{_CALL_OPEN}\n"
            + self.dumps_json({"name": c.name, "arguments": c.arguments}, f"tool call {c.name!r}")
            + f"\n{_CALL_CLOSE}"
            for c in calls
        )

    def parse_calls(self, text: str, start: int) -> list[RawCall]:
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
            self.escaper.require_no_marker(payload, where, ParseError)
            try:
                obj = json.loads(payload)
            except (ValueError, RecursionError) as e:
                raise ParseError(f"{where}: bad JSON inside {_CALL_OPEN}: {e}") from None
            calls.append(json_call(obj, where))
            pos = skip_ws(text, end + len(_CALL_CLOSE))
        return calls
