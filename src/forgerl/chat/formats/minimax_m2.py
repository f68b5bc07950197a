"""MiniMax-M2's chat format, byte for byte (M2_NOTES.md §2).

    ]~!b[]~b]system
    {system}                          (default "You are a helpful assistant.")
    [# Tools ... <tools>\\n<tool>{json}</tool>\\n...</tools> ... XML call instructions][e~[
    ]~b]user
    {content}[e~[
    ]~b]ai
    <think>
    {reasoning}
    </think>

    {content}
    <minimax:tool_call>
    <invoke name="N">
    <parameter name="K">V</parameter>
    </invoke>
    </minimax:tool_call>[e~[
    ]~b]tool
    <response>{result 1}</response>
    <response>{result 2}</response>[e~[

The generation prompt is `]~b]ai\\n<think>\\n`: the model never writes the opening `<think>`, so a
sampled completion is `{reasoning}\\n</think>\\n\\n{content}[calls][e~[`. Thinking of assistant
messages before the last user message is dropped (interleaved thinking). Kept messages show a
think block whenever their reasoning is not None, empty included, because that is what the model
sampled after the prompt's `<think>`; this keeps full and incremental renders token-identical.

Argument values are written raw when they are strings and as JSON otherwise; `parse` types them
back through the tool's JSON schema (see forgerl.chat.args for the exact rules).

Markers inside text (issue 27). The real format defines no escaping: a `</parameter>` inside a
string value is ambiguous for every M2 parser, vLLM's included. forgerl breaks each marker found in
free text (content, reasoning, user/system text, `<response>` bodies, argument values, JSON ones
included) with U+2060 after its first character, doubling any U+2060 already there; parse undoes
it (forgerl.chat.escape). Tool and parameter names are written raw inside `name="..."`, so one
holding `"`, `<`, a newline or a marker cannot be written: RenderError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from forgerl.chat.args import text_value
from forgerl.chat.base import register_format
from forgerl.chat.turns import RawCall, TurnFormat, excerpt, skip_ws
from forgerl.errors import ParseError
from forgerl.types import Message, ToolCall, ToolSpec

_BLOCK_OPEN = "<minimax:tool_call>"
_BLOCK_CLOSE = "</minimax:tool_call>"
_INVOKE_OPEN = '<invoke name="'
_INVOKE_CLOSE = "</invoke>"
_PARAM_OPEN = '<parameter name="'
_PARAM_CLOSE = "</parameter>"

_NAME_FORBIDDEN = '"<\n'  # what ends or breaks `name="..."` for M2 parsers

_TOOLS_INTRO = (
    "\n\n# Tools\nYou may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n\n<tools>\n"
)
_TOOLS_OUTRO = (
    "</tools>\n\nWhen making tool calls, use XML format to invoke tools and pass parameters:\n\n"
    "<minimax:tool_call>\n"
    '<invoke name="tool-name-1">\n'
    '<parameter name="param-key-1">param-value-1</parameter>\n'
    '<parameter name="param-key-2">param-value-2</parameter>\n'
    "...\n"
    "</invoke>\n"
    "</minimax:tool_call>"
)


@register_format
class MiniMaxM2Format(TurnFormat):
    name: ClassVar[str] = "minimax_m2"
    special_tokens: ClassVar[tuple[str, ...]] = (
        "]~!b[",
        "]~b]",
        "[e~[",
        "<think>",
        "</think>",
        _BLOCK_OPEN,
        _BLOCK_CLOSE,
    )
    end_of_message: ClassVar[str] = "[e~["
    think_start: ClassVar[str] = "<think>"
    think_end: ClassVar[str] = "</think>"
    prompt_opens_think: ClassVar[bool] = True
    tool_call_start: ClassVar[str] = _BLOCK_OPEN

    doc_start: ClassVar[str] = "]~!b["
    default_system: ClassVar[str | None] = "You are a helpful assistant."
    assistant_header: ClassVar[str] = "]~b]ai\n"
    call_markers: ClassVar[tuple[str, ...]] = (_BLOCK_CLOSE, _INVOKE_OPEN, _INVOKE_CLOSE, _PARAM_OPEN, _PARAM_CLOSE)
    text_arguments: ClassVar[bool] = True
    extra_markers: ClassVar[tuple[str, ...]] = ("<response>", "</response>", "</tool>")

    def system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        listing = ""
        if tools:
            lines = "".join(
                "<tool>"
                + self.dumps_json(
                    {"name": t.name, "description": t.description, "parameters": t.parameters}, f"tool {t.name!r}"
                )
                + "</tool>\n"
                for t in tools
            )
            listing = _TOOLS_INTRO + lines + _TOOLS_OUTRO
        text = self.escape_text(system if system is not None else "", "]~b]system\n", listing + "[e~[")
        return f"]~b]system\n{text}{listing}[e~[\n"

    def user_block(self, message: Message) -> str:
        return self.wrap("]~b]user\n", message.content, "[e~[\n")

    def tool_block(self, messages: Sequence[Message]) -> str:
        return "]~b]tool" + "".join(self.wrap("\n<response>", m.content, "</response>") for m in messages) + "[e~[\n"

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        out = ["\n", _BLOCK_OPEN, "\n"]
        for call in calls:
            name = self.check_name(call.name, "tool call name", _NAME_FORBIDDEN)
            out.append(f'{_INVOKE_OPEN}{name}">\n')
            for key, value in call.arguments.items():
                key = self.check_name(str(key), "argument name", _NAME_FORBIDDEN, f" of tool call {name!r}")
                out.append(self.wrap(f'{_PARAM_OPEN}{key}">', text_value(value), f"{_PARAM_CLOSE}\n"))
            out.append(_INVOKE_CLOSE + "\n")
        out.append(_BLOCK_CLOSE)
        return "".join(out)

    def parse_calls(self, text: str, start: int) -> list[RawCall]:
        calls: list[RawCall] = []
        pos = start
        while True:
            # One <minimax:tool_call> block; blocks may follow each other, separated by whitespace.
            pos += len(_BLOCK_OPEN)
            while True:
                pos = skip_ws(text, pos)
                if text.startswith(_BLOCK_CLOSE, pos):
                    pos += len(_BLOCK_CLOSE)
                    break
                if not text.startswith(_INVOKE_OPEN, pos):
                    if pos >= len(text):
                        raise ParseError(f"unclosed {_BLOCK_OPEN}: no {_BLOCK_CLOSE}")
                    raise ParseError(f"expected {_INVOKE_OPEN!r} or {_BLOCK_CLOSE!r}, got {excerpt(text, pos)}")
                name, pos = _read_name(text, pos + len(_INVOKE_OPEN), "invoke")
                self.escaper.require_no_marker(name, f"invoke name {name!r}", ParseError)
                args: dict[str, Any] = {}
                while True:
                    pos = skip_ws(text, pos)
                    if text.startswith(_INVOKE_CLOSE, pos):
                        pos += len(_INVOKE_CLOSE)
                        break
                    if not text.startswith(_PARAM_OPEN, pos):
                        if pos >= len(text):
                            raise ParseError(f"unclosed <invoke name={name!r}>: no {_INVOKE_CLOSE}")
                        raise ParseError(
                            f"expected {_PARAM_OPEN!r} or {_INVOKE_CLOSE!r} in invoke {name!r}, got {excerpt(text, pos)}"
                        )
                    key, pos = _read_name(text, pos + len(_PARAM_OPEN), "parameter")
                    end = text.find(_PARAM_CLOSE, pos)
                    if end < 0:
                        raise ParseError(f"unclosed <parameter name={key!r}> in invoke {name!r}")
                    if key in args:
                        raise ParseError(f"parameter {key!r} given twice in invoke {name!r}")
                    self.escaper.require_no_marker(key, f"parameter name {key!r} in invoke {name!r}", ParseError)
                    args[key] = self.unescape_text(text[pos:end], f"argument {key!r} of invoke {name!r}")
                    pos = end + len(_PARAM_CLOSE)
                calls.append((name, args))
            pos = skip_ws(text, pos)
            if pos >= len(text):
                return calls
            if not text.startswith(_BLOCK_OPEN, pos):
                raise ParseError(f"text after the tool-call block: {excerpt(text, pos)}")


def _read_name(text: str, pos: int, tag: str) -> tuple[str, int]:
    """Read `NAME">` (the rest of `<tag name="NAME">`); return the name and the position after."""
    q = text.find('"', pos)
    if q < 0:
        raise ParseError(f"unterminated name attribute in <{tag}>")
    name = text[pos:q]
    if not text.startswith(">", q + 1):
        raise ParseError(f"<{tag} name={name!r}> is not closed by '>': {excerpt(text, q + 1)}")
    if not name or "<" in name or "\n" in name:
        raise ParseError(f"bad {tag} name {name!r}")
    return name, q + 2
