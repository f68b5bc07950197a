"""Hypothesis strategies for chat-format tests: tools with every JSON type, typed calls, and
multi-turn tool episodes. Free text never contains the characters markers are made of ('<', '[',
']', '|'), so a message can never forge a marker (no format escapes its text)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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

_scalar = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | text
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6)

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "string": text,
    "integer": st.integers(-(10**9), 10**9),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-1000, 1000),
    "boolean": st.booleans(),
    "array": st.lists(_json, max_size=3),
    "object": st.dictionaries(text, _json, max_size=3),
    "null": st.none(),
}


@st.composite
def tool_calls(draw: st.DrawFn) -> ToolCall:
    spec = draw(st.sampled_from(TOOLS))
    props = spec.parameters["properties"]
    required = spec.parameters.get("required", [])
    optional = [k for k in props if k not in required]
    keys = list(required) + draw(st.lists(st.sampled_from(optional), unique=True)) if optional else list(required)
    args = {k: draw(VALUES[props[k]["type"]]) for k in keys}
    return ToolCall(name=spec.name, arguments=args)


@st.composite
def assistant_messages(draw: st.DrawFn, with_calls: bool | None = None) -> Message:
    calls = draw(st.lists(tool_calls(), min_size=1, max_size=3)) if with_calls or (
        with_calls is None and draw(st.booleans())
    ) else []
    return Message(
        role="assistant", content=draw(text), reasoning=draw(st.none() | text), tool_calls=calls
    )


@st.composite
def tool_loops(draw: st.DrawFn) -> tuple[list[Message], int]:
    """(messages, start): a history, a last user message, then `rounds` of assistant calls and tool
    results, maybe a final answer. `start` is the index right after the last user message, where
    the incremental (append-only) chain begins."""
    msgs: list[Message] = []
    if draw(st.booleans()):
        msgs.append(Message(role="system", content=draw(text)))
    for _ in range(draw(st.integers(0, 2))):  # earlier turns: their reasoning gets dropped
        msgs.append(Message(role="user", content=draw(text)))
        msgs.append(draw(assistant_messages(with_calls=False)))
    msgs.append(Message(role="user", content=draw(text)))
    start = len(msgs)
    for _ in range(draw(st.integers(1, 3))):
        a = draw(assistant_messages(with_calls=True))
        msgs.append(a)
        for c in a.tool_calls:
            msgs.append(Message(role="tool", content=draw(text), name=c.name, tool_call_id=c.id))
    if draw(st.booleans()):
        msgs.append(draw(assistant_messages(with_calls=False)))
    return msgs, start
