"""A small chat format written the way a user would write one (docs/formats.md walks through it).

test_formats.py registers it with the public `register_format` and runs it through the same
property tests as the built-in formats. It differs from them where the shared code must not
assume too much: one `<<call>>` marker per call (the call marker repeats), one JSON object per
call, no padding around the reasoning, and one block per tool result.

    <<sys>>
    {system}
    {tool spec JSON, one per line}<<eot>>
    <<user>>
    {content}<<eot>>
    <<bot>>
    <<reason>>{reasoning}<</reason>>
    {content}
    <<call>>{"name": "N", "arguments": {...}}
    <<call>>{"name": "M", "arguments": {...}}<<eot>>
    <<tool>>
    {result}<<eot>>
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from forgerl.chat import RawCall, TurnFormat
from forgerl.chat.turns import excerpt, json_call, skip_ws
from forgerl.errors import ParseError
from forgerl.types import Message, ToolCall, ToolSpec

CALL = "<<call>>"


class TaggedLinesFormat(TurnFormat):
    name: ClassVar[str] = "tagged_lines"
    special_tokens: ClassVar[tuple[str, ...]] = (
        "<<sys>>", "<<user>>", "<<bot>>", "<<tool>>", "<<eot>>", "<<reason>>", "<</reason>>", CALL,
    )
    end_of_message: ClassVar[str] = "<<eot>>"
    think_start: ClassVar[str] = "<<reason>>"
    think_end: ClassVar[str] = "<</reason>>"
    prompt_opens_think: ClassVar[bool] = False
    tool_call_start: ClassVar[str] = CALL
    assistant_header: ClassVar[str] = "<<bot>>\n"
    think_pad: ClassVar[str] = ""
    think_sep: ClassVar[str] = "\n"
    group_tool_results: ClassVar[bool] = False

    def system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        listing = "".join("\n" + self.dumps_json(t.to_openai(), f"tool {t.name!r}") for t in tools)
        return self.wrap("<<sys>>\n", system or "", listing + "<<eot>>\n") + listing + "<<eot>>\n"

    def user_block(self, message: Message) -> str:
        return self.wrap("<<user>>\n", message.content, "<<eot>>\n")

    def tool_block(self, messages: Sequence[Message]) -> str:
        return "".join(self.wrap("<<tool>>\n", m.content, "<<eot>>\n") for m in messages)

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        return "".join(
            "\n" + CALL + self.dumps_json({"name": c.name, "arguments": c.arguments}, f"tool call {c.name!r}")
            for c in calls
        )

    def parse_calls(self, text: str, start: int) -> list[RawCall]:
        calls: list[RawCall] = []
        pos = start
        decoder = json.JSONDecoder()
        while pos < len(text):
            if not text.startswith(CALL, pos):
                raise ParseError(f"expected {CALL!r} or the end of the message, got {excerpt(text, pos)}")
            pos += len(CALL)
            where = f"tool call {len(calls) + 1}"
            try:
                obj, end = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError) as e:
                raise ParseError(f"{where}: bad JSON after {CALL}: {e}") from None
            self.escaper.require_no_marker(text[pos:end], where, ParseError)
            calls.append(json_call(obj, where))
            pos = skip_ws(text, end)
        return calls
