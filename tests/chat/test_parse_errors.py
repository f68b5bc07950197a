"""Each kind of malformed completion gives a ParseError that names the problem."""

from __future__ import annotations

import pytest
from chat_strategies import TOOLS

from forgerl.chat import get_format
from forgerl.errors import ParseError

M2_CALL = '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="location">Oslo</parameter>\n</invoke>\n</minimax:tool_call>'

CASES = [
    # (format, completion, words the message must contain)
    ("minimax_m2", "thinking forever", "unclosed thinking"),
    ("minimax_m2", "r\n</think>\n\nhi <think> again", "stray"),
    ("minimax_m2", "r</think>" + M2_CALL[:-20], "unclosed"),
    ("minimax_m2", "r</think>" + M2_CALL.replace("</invoke>", ""), "expected"),
    ("minimax_m2", "r</think>" + M2_CALL.replace("</parameter>", ""), "unclosed <parameter"),
    ("minimax_m2", "r</think>" + M2_CALL.replace("get_weather", "launch_rocket"), "unknown tool 'launch_rocket'"),
    ("minimax_m2", "r</think>" + M2_CALL.replace('"location">Oslo', '"days">3'), "missing required argument(s): location"),
    ("minimax_m2", "r</think>" + M2_CALL.replace("</invoke>", '<parameter name="days">three</parameter>\n</invoke>'), "'days' of tool 'get_weather' must be integer"),
    ("minimax_m2", "r</think>" + M2_CALL + "\nand more text", "text after the tool-call block"),
    ("minimax_m2", "r</think>" + M2_CALL.replace("</invoke>", '<parameter name="location">X</parameter>\n</invoke>'), "given twice"),
    ("minimax_m2", "r</think>done[e~[\n]~b]user", "text after the end-of-message"),
    ("minimax_m2", "r</think>content </minimax:tool_call>", "without an opening"),
    ("minimax_m2", 'r</think><minimax:tool_call>\n<invoke name=get_weather>\n</invoke>\n</minimax:tool_call>', "expected"),
    ("hermes", "<think>\nforever", "unclosed thinking"),
    ("hermes", "answer</think>", "stray"),
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Oslo\"}\n", "unclosed <tool_call>"),
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {location: Oslo}}\n</tool_call>", "bad JSON"),
    ("hermes", "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>", "unknown tool 'nope'"),
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": 5}}\n</tool_call>", "must be string"),
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>", "missing required"),
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}\n</tool_call>", "must be a JSON object"),
    ("hermes", "<tool_call>\n[1, 2]\n</tool_call>", "must be a JSON object"),
    ("hermes", "<tool_call>\n{\"arguments\": {}}\n</tool_call>", "\"name\""),
    ("hermes", "<tool_call>\n{\"name\": \"no_args\"}\n</tool_call> trailing", "text after the tool calls"),
    ("json_tools", "<|think|>forever", "unclosed thinking"),
    ("json_tools", "hi\n<|tool_calls|>[{\"name\": \"no_args\", \"arguments\": {}}", "bad JSON"),
    ("json_tools", "hi\n<|tool_calls|>{\"name\": \"no_args\"}", "JSON array"),
    ("json_tools", "hi\n<|tool_calls|>[{\"name\": \"no_args\"}] then text", "text after the tool-call array"),
    ("json_tools", "<|tool_calls|>[{\"name\": \"all_types\", \"arguments\": {\"p_string\": \"s\", \"p_boolean\": 1}}]", "must be boolean"),
    ("json_tools", "<|tool_calls|>[{\"name\": \"all_types\", \"arguments\": {\"p_string\": \"s\", \"p_integer\": 1.5}}]", "must be integer"),
    ("json_tools", "<|tool_calls|>[{\"name\": \"x\", \"arguments\": {}}]", "unknown tool"),
]


@pytest.mark.parametrize(("name", "text", "words"), CASES)
def test_parse_error_says_what_is_wrong(name, text, words) -> None:
    with pytest.raises(ParseError) as info:
        get_format(name).parse(text, TOOLS)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["minimax_m2", "hermes", "json_tools"])
def test_unknown_tools_accepted_when_no_tools_given(name) -> None:
    fmt = get_format(name)
    from forgerl.types import Message, ToolCall

    body = fmt.render_assistant_body(
        Message(role="assistant", reasoning="", tool_calls=[ToolCall(name="anything", arguments={"n": 3, "s": "x"})])
    )
    parsed = fmt.parse(body)  # no tools: no name check; M2 types values best effort
    assert parsed.tool_calls[0].name == "anything"
    assert parsed.tool_calls[0].arguments == {"n": 3, "s": "x"}


def test_m2_several_call_blocks_are_all_read() -> None:
    fmt = get_format("minimax_m2")
    text = "r\n</think>\n\n" + M2_CALL + "\n" + M2_CALL.replace("Oslo", "Rome") + "[e~["
    parsed = fmt.parse(text, TOOLS)
    assert [c.arguments["location"] for c in parsed.tool_calls] == ["Oslo", "Rome"]


def test_hermes_arguments_as_json_string_are_accepted() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": "{\\"location\\": \\"Oslo\\"}"}\n</tool_call><|im_end|>'
    parsed = get_format("hermes").parse(text, TOOLS)
    assert parsed.tool_calls[0].arguments == {"location": "Oslo"}
    assert parsed.reasoning is None and parsed.content == ""
