"""MiniMax-M2's format reproduced byte for byte (M2_NOTES.md §2), and its token boundaries."""

from __future__ import annotations

from forgerl.chat import encode_segments, get_format
from forgerl.chat.base import segments_text
from forgerl.types import Message, ToolCall, ToolSpec

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the current weather for a location.",
    parameters={
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
)

MESSAGES = [
    Message(role="user", content="Hi"),
    Message(role="assistant", reasoning="The user greets me; greet back.", content="Hello! How can I help?"),
    Message(role="user", content="Weather in Paris and Rome, celsius?"),
    Message(
        role="assistant",
        reasoning="Need two weather lookups; call in parallel.",
        tool_calls=[
            ToolCall(name="get_weather", arguments={"location": "Paris", "unit": "celsius"}),
            ToolCall(name="get_weather", arguments={"location": "Rome", "unit": "celsius"}),
        ],
    ),
    Message(role="tool", content='{"temp": 18}', name="get_weather"),
    Message(role="tool", content='{"temp": 24}', name="get_weather"),
]

EXPECTED = (
    "]~!b[]~b]system\n"
    "You are a helpful assistant.\n"
    "\n"
    "# Tools\n"
    "You may call one or more tools to assist with the user query.\n"
    "Here are the tools available in JSONSchema format:\n"
    "\n"
    "<tools>\n"
    '<tool>{"name": "get_weather", "description": "Get the current weather for a location.", '
    '"parameters": {"type": "object", "properties": {"location": {"type": "string", "description": '
    '"City name"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": '
    '["location"]}}</tool>\n'
    "</tools>\n"
    "\n"
    "When making tool calls, use XML format to invoke tools and pass parameters:\n"
    "\n"
    "<minimax:tool_call>\n"
    '<invoke name="tool-name-1">\n'
    '<parameter name="param-key-1">param-value-1</parameter>\n'
    '<parameter name="param-key-2">param-value-2</parameter>\n'
    "...\n"
    "</invoke>\n"
    "</minimax:tool_call>[e~[\n"
    "]~b]user\n"
    "Hi[e~[\n"
    "]~b]ai\n"
    "Hello! How can I help?[e~[\n"
    "]~b]user\n"
    "Weather in Paris and Rome, celsius?[e~[\n"
    "]~b]ai\n"
    "<think>\n"
    "Need two weather lookups; call in parallel.\n"
    "</think>\n"
    "\n"
    "\n"
    "<minimax:tool_call>\n"
    '<invoke name="get_weather">\n'
    '<parameter name="location">Paris</parameter>\n'
    '<parameter name="unit">celsius</parameter>\n'
    "</invoke>\n"
    '<invoke name="get_weather">\n'
    '<parameter name="location">Rome</parameter>\n'
    '<parameter name="unit">celsius</parameter>\n'
    "</invoke>\n"
    "</minimax:tool_call>[e~[\n"
    "]~b]tool\n"
    '<response>{"temp": 18}</response>\n'
    '<response>{"temp": 24}</response>[e~[\n'
    "]~b]ai\n"
    "<think>\n"
)


def test_m2_notes_example_byte_for_byte() -> None:
    fmt = get_format("minimax_m2")
    assert segments_text(fmt.render(MESSAGES, [WEATHER])) == EXPECTED


def test_m2_segments_cut_at_the_sampled_body() -> None:
    fmt = get_format("minimax_m2")
    segs = fmt.render(MESSAGES, [WEATHER])
    bodies = [s.text for s in segs if s.trainable]
    assert bodies[0] == "Hello! How can I help?[e~["  # earlier turn: thinking dropped
    assert bodies[1].startswith("Need two weather lookups; call in parallel.\n</think>\n\n\n<minimax:tool_call>")
    assert bodies[1].endswith("</minimax:tool_call>[e~[")
    assert bodies[1] == fmt.render_assistant_body(MESSAGES[3])
    # The prompt ends with the generation prompt, the opened think block included.
    assert segs[-1].text == "]~b]ai\n<think>\n"


def test_m2_default_system_and_custom_system() -> None:
    fmt = get_format("minimax_m2")
    bare = segments_text(fmt.render([Message(role="user", content="x")], add_generation_prompt=False))
    assert bare == "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nx[e~[\n"
    custom = segments_text(fmt.render([Message(role="system", content="Be brief."), Message(role="user", content="x")]))
    assert custom.startswith("]~!b[]~b]system\nBe brief.[e~[\n]~b]user\nx[e~[\n")


def test_m2_non_string_arguments_are_json_and_typed_back() -> None:
    fmt = get_format("minimax_m2")
    spec = ToolSpec(
        name="f",
        parameters={
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "tags": {"type": "array"},
                "cfg": {"type": "object"},
                "none": {"type": "null"},
                "s": {"type": "string"},
            },
        },
    )
    args = {"n": 3, "x": 0.5, "ok": False, "tags": ["é", 1], "cfg": {"a": None}, "none": None, "s": "42"}
    body = fmt.render_assistant_body(Message(role="assistant", reasoning="", tool_calls=[ToolCall(name="f", arguments=args)]))
    assert '<parameter name="n">3</parameter>' in body
    assert '<parameter name="tags">["é", 1]</parameter>' in body
    assert '<parameter name="s">42</parameter>' in body
    assert fmt.parse(body, [spec]).tool_calls[0].arguments == args
    # Without the schema the string "42" cannot be told from the number 42: best effort.
    assert fmt.parse(body).tool_calls[0].arguments["s"] == 42


def test_m2_completion_text_as_sampled() -> None:
    fmt = get_format("minimax_m2")
    parsed = fmt.parse("Short thought.\n</think>\n\nThe answer is 4.[e~[")
    assert (parsed.reasoning, parsed.content, parsed.tool_calls) == ("Short thought.", "The answer is 4.", [])
    assert fmt.parse("</think>answer").reasoning == ""


def test_m2_markers_are_single_tokens_and_segments_encode(tokenizer) -> None:
    fmt = get_format("minimax_m2")
    for marker in fmt.special_tokens:
        assert len(tokenizer.encode(marker, add_special_tokens=False)) == 1, marker
    rendered = encode_segments(tokenizer, fmt.render(MESSAGES, [WEATHER]))
    assert tokenizer.decode(rendered.ids, skip_special_tokens=False) == EXPECTED
    trained = [i for i, m in zip(rendered.ids, rendered.mask, strict=True) if m]
    assert tokenizer.decode(trained, skip_special_tokens=False) == (
        "Hello! How can I help?[e~[" + fmt.render_assistant_body(MESSAGES[3])
    )
