"""Hypothesis strategies for chat-format tests: tools with every JSON type, typed calls, and
multi-turn tool episodes. `text` is plain free text (no characters markers are made of);
`hostile_text(markers)` is built from a format's own markers, their pieces and the escape
character, to prove that formats escape what they carry (issue 27). Every strategy that draws
text takes the text strategy as an argument."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from forgerl.chat import MARKER_BREAK
from forgerl.types import Message, ToolCall, ToolSpec

TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")

TOOLS = [
    ToolSpec(
        name="all_types",
        description="Takes one argument of every JSON type — ünïcode too.",
        parameters={
            "type": "object",
            "properties": {f"p_{t}": {"type": t} for t in TYPES},
            "required": ["p_string"],
        },
    ),
    ToolSpec(
        name="get_weather",
        description="Weather in a city.",
        parameters={
            "type": "object",
            "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["location"],
        },
    ),
    ToolSpec(name="no_args", description="", parameters={"type": "object", "properties": {}}),
]

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<[]|"), max_size=24
) | st.sampled_from(["", "\n", "\n\n", " lead", "trail\n", "{\"k\": 1}", "a > b", "日本語 ✓", "null", "42"])



def hostile_text(markers: Sequence[str]) -> st.SearchStrategy[str]:
    """Text made of whole markers, their prefixes and suffixes (a marker completed by the text
    around it), the escape character alone and doubled, JSON and quote characters, and
    arbitrary text, mixed; plus plain `text` now and then."""
    pieces = sorted({*markers, *(m[:i] for m in markers for i in range(1, len(m))), *(m[i:] for m in markers for i in range(1, len(m)))})
    atom = (
        st.sampled_from(pieces)
        | st.sampled_from([MARKER_BREAK, MARKER_BREAK * 2, "\n", " ", '"', "\\", "{", "}", "null", "42"])
        | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
    )
    return st.lists(atom, max_size=8).map("".join) | text


def values(text_st: st.SearchStrategy[str]) -> dict[str, st.SearchStrategy[Any]]:
    """A value strategy per JSON type; strings (and object keys) drawn from `text_st`."""
    scalar = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | text_st
    nested = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text_st, inner, max_size=3), max_leaves=6)
    return {
        "string": text_st,
        "integer": st.integers(-(10**9), 10**9),
        "number": st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-1000, 1000),
        "boolean": st.booleans(),
        "array": st.lists(nested, max_size=3),
        "object": st.dictionaries(text_st, nested, max_size=3),
        "null": st.none(),
    }


VALUES = values(text)


@st.composite
def tool_calls(draw: st.DrawFn, text_st: st.SearchStrategy[str] = text) -> ToolCall:
    spec = draw(st.sampled_from(TOOLS))
    props = spec.parameters["properties"]
    required = spec.parameters.get("required", [])
    optional = [k for k in props if k not in required]
    keys = list(required) + draw(st.lists(st.sampled_from(optional), unique=True)) if optional else list(required)
    by_type = VALUES if text_st is text else values(text_st)
    args = {k: draw(by_type[props[k]["type"]]) for k in keys}
    return ToolCall(name=spec.name, arguments=args)


@st.composite
def assistant_messages(draw: st.DrawFn, with_calls: bool | None = None, text_st: st.SearchStrategy[str] = text) -> Message:
    calls = draw(st.lists(tool_calls(text_st), min_size=1, max_size=3)) if with_calls or (
        with_calls is None and draw(st.booleans())
    ) else []
    return Message(
        role="assistant", content=draw(text_st), reasoning=draw(st.none() | text_st), tool_calls=calls
    )


@st.composite
def tool_loops(draw: st.DrawFn, text_st: st.SearchStrategy[str] = text) -> tuple[list[Message], int]:
    """(messages, start): a history, a last user message, then `rounds` of assistant calls and tool
    results, maybe a final answer. `start` is the index right after the last user message, where
    the incremental (append-only) chain begins."""
    msgs: list[Message] = []
    if draw(st.booleans()):
        msgs.append(Message(role="system", content=draw(text_st)))
    for _ in range(draw(st.integers(0, 2))):  # earlier turns: their reasoning gets dropped
        msgs.append(Message(role="user", content=draw(text_st)))
        msgs.append(draw(assistant_messages(with_calls=False, text_st=text_st)))
    msgs.append(Message(role="user", content=draw(text_st)))
    start = len(msgs)
    for _ in range(draw(st.integers(1, 3))):
        a = draw(assistant_messages(with_calls=True, text_st=text_st))
        msgs.append(a)
        for c in a.tool_calls:
            msgs.append(Message(role="tool", content=draw(text_st), name=c.name, tool_call_id=c.id))
    if draw(st.booleans()):
        msgs.append(draw(assistant_messages(with_calls=False, text_st=text_st)))
    return msgs, start
