"""`json_tools`: forgerl's own JSON function-calling format, a third scaffold to perturb across.

Where M2 writes calls as XML and Hermes as one JSON object per tag, this format ends the
assistant message with a single JSON array of calls, the way OpenAI-style function calling
returns them. Every role has its own marker, so no role name is ever spelled out as text:

    <|system|>
    {system}

    # Functions
    You can call these functions (JSON Schema of their arguments):
    [{"name": ..., "description": ..., "parameters": {...}}, ...]      (one JSON array, one line)

    To call functions, end your reply with one line:
    <|tool_calls|>[{"name": "function-name", "arguments": {"arg": "value"}}]<|end|>
    <|user|>
    {content}<|end|>
    <|assistant|>
    <|think|>{reasoning}<|/think|>
    {content}
    <|tool_calls|>[{"name": "N", "arguments": {...}}, {"name": "M", "arguments": {...}}]<|end|>
    <|tool|>N
    {result of N}<|end|>
    <|tool|>M
    {result of M}<|end|>

Rules:
* The generation prompt is `<|assistant|>\\n`; the model writes `<|think|>` itself. The thinking
  text sits between the markers with no padding; one `\\n` separates `<|/think|>` and the content.
* Tool results get one `<|tool|>` block each, headed by the tool's name (the message's `name`), so
  parallel results stay attributable without ids.
* `<|tool_calls|>` is preceded by `\\n` and followed by the JSON array (json.dumps,
  ensure_ascii=False, default separators); nothing but whitespace may follow the array.
* No system block when there is neither a system message nor tools.
* Reasoning before the last user message is dropped (the same interleaved-thinking rule as M2).
* Markers inside text (issue 27): free text gets U+2060 after the first character of each marker
  it contains (forgerl.chat.escape); the JSON array writes that character as a `\\u` escape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from forgerl.chat.base import register_format
from forgerl.chat.turns import RawCall, TurnFormat, excerpt, json_call, skip_ws
from forgerl.errors import ParseError
from forgerl.types import Message, ToolCall, ToolSpec

_CALLS = "<|tool_calls|>"

_TOOLS_INTRO = "# Functions\nYou can call these functions (JSON Schema of their arguments):\n"
_TOOLS_OUTRO = (
    "\n\nTo call functions, end your reply with one line:\n"
    '<|tool_calls|>[{"name": "function-name", "arguments": {"arg": "value"}}]'
)


@register_format
class JsonToolsFormat(TurnFormat):
    name: ClassVar[str] = "json_tools"
    special_tokens: ClassVar[tuple[str, ...]] = (
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|tool|>",
        "<|end|>",
        "<|think|>",
        "<|/think|>",
        _CALLS,
    )
    end_of_message: ClassVar[str] = "<|end|>"
    think_start: ClassVar[str] = "<|think|>"
    think_end: ClassVar[str] = "<|/think|>"
    prompt_opens_think: ClassVar[bool] = False
    tool_call_start: ClassVar[str] = _CALLS

    assistant_header: ClassVar[str] = "<|assistant|>\n"
    think_pad: ClassVar[str] = ""
    think_sep: ClassVar[str] = "\n"
    group_tool_results: ClassVar[bool] = False

    def system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        listing = ""
        if tools:
            specs = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
            listing = _TOOLS_INTRO + self.dumps_json(specs, "tool listing") + _TOOLS_OUTRO
        text = self.escape_text(system or "", "<|system|>\n", ("\n\n" + listing if listing else "") + "<|end|>")
        if listing:
            text = (text + "\n\n" if text else "") + listing
        return f"<|system|>\n{text}<|end|>\n"

    def user_block(self, message: Message) -> str:
        return self.wrap("<|user|>\n", message.content, "<|end|>\n")

    def tool_block(self, messages: Sequence[Message]) -> str:
        return "".join(
            self.wrap("<|tool|>", m.name or "", "\n") + self.wrap("", m.content, "<|end|>\n") for m in messages
        )

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        payload = [{"name": c.name, "arguments": c.arguments} for c in calls]
        return "\n" + _CALLS + self.dumps_json(payload, "tool calls")

    def parse_calls(self, text: str, start: int) -> list[RawCall]:
        pos = skip_ws(text, start + len(_CALLS))
        try:
            value, end = json.JSONDecoder().raw_decode(text, pos)
        except (ValueError, RecursionError) as e:
            raise ParseError(f"bad JSON after {_CALLS}: {e}") from None
        self.escaper.require_no_marker(text[pos:end], "the tool-call array", ParseError)
        rest = skip_ws(text, end)
        if rest < len(text):
            raise ParseError(f"text after the tool-call array: {excerpt(text, rest)}")
        if not isinstance(value, list):
            raise ParseError(f"{_CALLS} must be followed by a JSON array of calls, got {type(value).__name__}")
        return [json_call(obj, f"tool call {i + 1}") for i, obj in enumerate(value)]
