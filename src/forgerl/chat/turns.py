"""The shared skeleton of turn-based chat formats (M2, Hermes, json_tools).

All three formats have the same shape: a system block (holding the tool list), then one block per
message, assistant messages cut as [header | body ... end marker | text after the marker], tool
results grouped or not, and the same interleaved-thinking rule (keep the reasoning of assistant
messages after the last user message, drop it before). Only the literal strings and the tool-call
syntax differ. Writing the cutting and the think rule once is what makes the full render and the
incremental render (prompt + sampled body + `render_continuation`) agree for every format: each
piece of text is produced by the same function in both paths, so the segments are identical.

Parsing is shared the same way: strip the end marker, split off the thinking, split content from
the tool-call block, then let the format read its own call syntax and type the arguments through
the tool schemas (forgerl.chat.args). Everything is `str.find`/`startswith` scanning plus one
regular expression of literal alternatives (marker search): linear time, so a 200k-character
completion parses as fast as it reads.

Free text is escaped where it contains a marker (forgerl.chat.escape): the shared code escapes
content and reasoning, and gives the hooks `wrap`, `escape_text`, `dumps_json` and
`check_name` so a format's own blocks do the same. How to write a format: docs/formats.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

from forgerl.chat.args import check_json_arguments, type_text_arguments
from forgerl.chat.base import ChatFormat, ParsedCompletion, Segment, reserved_markers
from forgerl.chat.escape import MarkerEscaper, RenderError
from forgerl.errors import ParseError
from forgerl.types import Message, ToolCall, ToolSpec

RawCall = tuple[str, dict[str, Any]]


def strip_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def strip_suffix(text: str, suffix: str) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def excerpt(text: str, pos: int, width: int = 40) -> str:
    """A short, printable piece of `text` at `pos` for error messages."""
    piece = text[pos : pos + width]
    return repr(piece + ("..." if pos + width < len(text) else "")) if piece else "end of text"


def skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


class TurnFormat(ChatFormat):
    """The base class for a chat format made of blocks: set the literal strings as class
    attributes, implement five hooks, and the rest (the assistant message with its thinking,
    segment cutting for token-exact incremental renders, interleaved-thinking rule, parsing of
    content and thinking, argument typing, marker escaping) is shared. docs/formats.md has a
    worked example; tests/chat runs every registered format through the same property tests.

    Hooks (all receive raw, unescaped messages; escape what you write with `wrap`,
    `escape_text` or `dumps_json`):

    * `system_block(system, tools)`: the system message (None when absent) and the tool listing.
    * `user_block(message)`: one user message, end marker and separator included.
    * `tool_block(messages)`: one or more consecutive tool results (see `group_tool_results`).
    * `render_calls(calls)`: the tool-call block as it follows the content. It must begin with
      "\\n" + `tool_call_start` (parse drops one "\\n" before the marker) and comes last: only
      the end-of-message marker follows it.
    * `parse_calls(text, start)`: read the block(s) `render_calls` wrote, from `start` (where
      `tool_call_start` is) to the end of `text`; return (name, arguments) pairs; raise only
      ParseError. `tool_call_start` may appear again inside the block (one marker per call);
      before it, escaping guarantees it never appears in content.
    """

    # Text before everything (M2's document marker).
    doc_start: ClassVar[str] = ""
    # The system text used when the conversation has none (None: no system block unless tools).
    default_system: ClassVar[str | None] = None
    # Opens an assistant message (the generation prompt is this, plus the think opener for M2).
    assistant_header: ClassVar[str]
    # What a full render puts right after an assistant message's end-of-message marker.
    after_end: ClassVar[str] = "\n"
    # Between a think marker and the reasoning text on both sides ("\n" in M2 and Hermes).
    think_pad: ClassVar[str] = "\n"
    # Between the closing think marker and the content.
    think_sep: ClassVar[str] = "\n\n"
    # Consecutive tool results share one block (M2, Hermes) or get one block each.
    group_tool_results: ClassVar[bool] = True
    # Markers of the call syntax that must not appear in content (closing tags).
    call_markers: ClassVar[tuple[str, ...]] = ()
    # Other strings that delimit free text in this format (M2's `</response>`); escaped like markers.
    extra_markers: ClassVar[tuple[str, ...]] = ()
    # True when the call syntax carries argument values as text (to be typed through the schema).
    text_arguments: ClassVar[bool] = False

    # --- format hooks -------------------------------------------------------------------------
    def system_block(self, system: str | None, tools: Sequence[ToolSpec]) -> str:
        raise NotImplementedError(f"{type(self).__name__} must implement system_block")

    def user_block(self, message: Message) -> str:
        raise NotImplementedError(f"{type(self).__name__} must implement user_block")

    def tool_block(self, messages: Sequence[Message]) -> str:
        raise NotImplementedError(f"{type(self).__name__} must implement tool_block")

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        """The call block as it follows the content (with its leading separator)."""
        raise NotImplementedError(f"{type(self).__name__} must implement render_calls")

    def parse_calls(self, text: str, start: int) -> list[RawCall]:
        """Read the call block(s) that begin at `start`, through the end of `text`."""
        raise NotImplementedError(f"{type(self).__name__} must implement parse_calls")

    # --- escaping helpers for the hooks -------------------------------------------------------
    @cached_property
    def escaper(self) -> MarkerEscaper:
        """Escapes this format's reserved markers (`forgerl.chat.reserved_markers`)."""
        return MarkerEscaper(reserved_markers(self), f"chat format {self.name!r}")

    def escape_text(self, text: str, before: str = "", after: str = "") -> str:
        """Free text with every marker broken; `before`/`after` are the fixed text around it."""
        return self.escaper.escape(text, before, after)

    def wrap(self, prefix: str, text: str, suffix: str) -> str:
        """prefix + escaped text + suffix: the usual shape of a block."""
        return prefix + self.escaper.escape(text, prefix, suffix) + suffix

    def unescape_text(self, text: str, where: str) -> str:
        """The inverse of `escape_text`, for parsers; ParseError when `text` holds a raw marker."""
        return self.escaper.unescape(text, where)

    def dumps_json(self, value: Any, where: str) -> str:
        """json.dumps(value, ensure_ascii=False) with markers inside strings \\u-escaped."""
        return self.escaper.dumps(value, where)

    def check_name(self, name: str, what: str, forbidden: str = "", context: str = "") -> str:
        """A name written raw (not escaped), returned unchanged; RenderError when it is empty,
        holds one of the `forbidden` characters, or holds a marker. `what` and `context` name it
        in the message ("argument name", " of tool call 'f'")."""
        if not name:
            raise RenderError(f"{what}{context} is empty; give it a name")
        bad = sorted({c for c in name if c in forbidden})
        if bad:
            raise RenderError(
                f"{what} {name!r}{context} contains {', '.join(map(repr, bad))}, which the {self.name} "
                "format cannot write in a name; rename it"
            )
        self.escaper.require_no_marker(name, f"{what} {name!r}{context}")
        return name

    # --- rendering ----------------------------------------------------------------------------
    @property
    def generation_prompt(self) -> str:
        opener = self.think_start + self.think_pad if self.prompt_opens_think else ""
        return self.assistant_header + opener

    def _assistant_parts(self, message: Message, keep_reasoning: bool) -> tuple[str, str]:
        """(header, body): the header is prompt text, the body is what the model samples."""
        header = self.assistant_header
        think = ""
        if keep_reasoning and message.reasoning is not None:
            opener = self.think_start + self.think_pad
            closer = self.think_pad + self.think_end + self.think_sep
            close = self.escape_text(message.reasoning, opener, closer) + closer
            if self.prompt_opens_think:
                header += opener
                think = close
            else:
                think = opener + close
        calls = self.render_calls(message.tool_calls) if message.tool_calls else ""
        tail = calls + self.end_of_message
        content = self.escape_text(message.content, header + think, tail)
        return header, think + content + tail

    def render_assistant_body(self, message: Message) -> str:
        """What the model samples after the generation prompt for `message`, end marker included.

        When the prompt opens the thinking block (M2) the model must close it, so a message
        without reasoning is rendered as one with empty reasoning; parse then returns "".
        """
        if self.prompt_opens_think and message.reasoning is None:
            message = message.model_copy(update={"reasoning": ""})
        return self._assistant_parts(message, keep_reasoning=True)[1]

    def _render_messages(self, messages: Sequence[Message], segs: list[Segment], keep_all: bool) -> None:
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        i = 0
        while i < len(messages):
            m = messages[i]
            if m.role == "tool":
                j = i
                while j < len(messages) and messages[j].role == "tool" and (self.group_tool_results or j == i):
                    j += 1
                segs.append(Segment(self.tool_block(messages[i:j])))
                i = j
                continue
            if m.role == "user":
                segs.append(Segment(self.user_block(m)))
            elif m.role == "system":
                segs.append(Segment(self.system_block(m.content, ())))
            else:
                header, body = self._assistant_parts(m, keep_all or i > last_user)
                segs += [Segment(header), Segment(body, trainable=True), Segment(self.after_end)]
            i += 1

    def render(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), add_generation_prompt: bool = True
    ) -> list[Segment]:
        segs: list[Segment] = [Segment(self.doc_start)]
        rest = list(messages)
        system = self.default_system
        if rest and rest[0].role == "system":
            system = rest.pop(0).content
        if system is not None or tools:
            segs.append(Segment(self.system_block(system, tools)))
        self._render_messages(rest, segs, keep_all=False)
        if add_generation_prompt:
            segs.append(Segment(self.generation_prompt))
        return [s for s in segs if s.text]

    def render_continuation(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        add_generation_prompt: bool = True,
        completion_closed: bool = True,
    ) -> list[Segment]:
        segs = [Segment(("" if completion_closed else self.end_of_message) + self.after_end)]
        # Messages here follow the previous completion: assistant ones keep their reasoning unless
        # a user message in this continuation comes after them.
        has_user = any(m.role == "user" for m in messages)
        self._render_messages(messages, segs, keep_all=not has_user)
        if add_generation_prompt:
            segs.append(Segment(self.generation_prompt))
        return [s for s in segs if s.text]

    # --- parsing ------------------------------------------------------------------------------
    def parse(self, text: str, tools: Sequence[ToolSpec] = ()) -> ParsedCompletion:
        if not isinstance(text, str):
            raise ParseError(f"completion must be text, got {type(text).__name__}")
        eom = self.end_of_message
        text = strip_suffix(text, eom)
        if eom in text:
            raise ParseError(f"text after the end-of-message marker {eom!r}: {excerpt(text, text.find(eom))}")
        reasoning, rest = self._split_reasoning(text)
        for marker in (self.think_start, self.think_end):
            if marker in rest:
                raise ParseError(f"stray {marker!r} after the thinking block: {excerpt(rest, rest.find(marker))}")
        k = rest.find(self.tool_call_start)
        head = rest if k < 0 else rest[:k]
        for marker in self.call_markers:
            if marker in head:
                raise ParseError(
                    f"{marker!r} without an opening {self.tool_call_start!r}: {excerpt(head, head.find(marker))}"
                )
        if reasoning is not None:
            reasoning = self.unescape_text(reasoning, "reasoning")
        if k < 0:
            return ParsedCompletion(reasoning=reasoning, content=self.unescape_text(rest, "content"))
        content = self.unescape_text(strip_suffix(head, "\n"), "content")
        calls = []
        for name, args in self.parse_calls(rest, k):
            if self.text_arguments:
                typed = type_text_arguments(name, args, tools)
            else:
                typed = check_json_arguments(name, args, tools)
            calls.append(ToolCall(name=name, arguments=typed))
        return ParsedCompletion(reasoning=reasoning, content=content, tool_calls=calls)

    def _split_reasoning(self, text: str) -> tuple[str | None, str]:
        ts, te, pad = self.think_start, self.think_end, self.think_pad
        if self.prompt_opens_think:
            j = text.find(te)
            if j < 0:
                raise ParseError(f"unclosed thinking: the completion never writes {te!r}")
            inner = text[:j]
            reasoning = strip_suffix(inner, pad)
        elif text.startswith(ts):
            j = text.find(te, len(ts))
            if j < 0:
                raise ParseError(f"unclosed thinking: {ts!r} is never closed by {te!r}")
            inner = text[len(ts) : j]
            reasoning = strip_suffix(strip_prefix(inner, pad), pad)
        else:
            return None, text
        if ts in inner:
            raise ParseError(f"nested {ts!r} inside the thinking block")
        return reasoning, strip_prefix(text[j + len(te) :], self.think_sep)


def json_call(obj: Any, where: str) -> RawCall:
    """A call written as JSON `{"name": ..., "arguments": {...}}` (arguments may be a JSON string,
    as some models write them, or absent for a call without arguments)."""
    if not isinstance(obj, dict):
        raise ParseError(f"{where}: a call must be a JSON object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ParseError(f"{where}: a call needs a non-empty string \"name\"")
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError) as e:
            raise ParseError(f"{where}: \"arguments\" of {name!r} is a string that is not JSON: {e}") from None
    if not isinstance(args, dict):
        raise ParseError(f"{where}: \"arguments\" of {name!r} must be a JSON object, got {type(args).__name__}")
    return name, args
