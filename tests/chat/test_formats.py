"""Properties every registered chat format must have (DESIGN.md contracts 2 and 3), run against
every built-in format and a user's format (tests/chat/user_format.py) registered through the
public API. Free text is drawn both plain and from each format's own markers (issue 27)."""

from __future__ import annotations

import copy
import functools
import time
from typing import Any

import pytest
from chat_strategies import TOOLS, assistant_messages, hostile_text, text, tool_loops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from user_format import TaggedLinesFormat

from forgerl.chat import (
    MARKER_BREAK,
    ParsedCompletion,
    encode_segments,
    get_format,
    list_formats,
    register_format,
    reserved_markers,
    unregister_format,
)
from forgerl.chat.base import ChatFormat, segments_text
from forgerl.chat.escape import MarkerEscaper
from forgerl.errors import ParseError
from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer
from forgerl.types import Message, ToolCall

USER_FORMAT = TaggedLinesFormat.name
# Every format registered before this module runs (the built-ins, and any a plugin adds), plus ours.
FORMATS = [*list_formats(), USER_FORMAT]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _user_format_registered():
    """Registered for this module only: other modules (the tokenizer's) enumerate the registry."""
    register_format(TaggedLinesFormat)
    yield
    unregister_format(USER_FORMAT)


@pytest.fixture(params=FORMATS)
def fmt(request) -> ChatFormat:
    return get_format(request.param)


@functools.cache
def _text_for(name: str) -> st.SearchStrategy[str]:
    """Plain text or text made of the format's own markers."""
    return text | hostile_text(reserved_markers(get_format(name)))


@st.composite
def _format_and(draw: st.DrawFn, make) -> tuple[str, Any]:
    name = draw(st.sampled_from(FORMATS))
    return name, draw(make(_text_for(name)))


def test_every_registered_format_is_under_test() -> None:
    assert list_formats() == sorted(FORMATS)


def test_all_formats_registered_with_streaming_attributes() -> None:
    assert set(FORMATS) <= set(list_formats())
    for name in FORMATS:
        f = get_format(name)
        assert f.name == name
        for attr in ("think_start", "think_end", "tool_call_start", "end_of_message"):
            assert getattr(f, attr) in f.special_tokens, (name, attr)
        assert isinstance(f.prompt_opens_think, bool)
    assert get_format("minimax_m2").prompt_opens_think is True
    assert get_format("hermes").prompt_opens_think is False


def test_unknown_format_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="minimax_m2"):
        get_format("nope")


def _normalize(fmt: ChatFormat, m: Message) -> Message:
    """What the agent holds after parsing: with a prompt-opened think block, reasoning is never None."""
    if m.role == "assistant" and fmt.prompt_opens_think and m.reasoning is None:
        return m.model_copy(update={"reasoning": ""})
    return m


def _incremental(fmt: ChatFormat, tok, msgs: list[Message], start: int, final_gen: bool):
    """Ids and mask built the way a rollout builds them: prompt, sampled body, continuation, ..."""
    first = encode_segments(tok, fmt.render(msgs[:start], TOOLS, add_generation_prompt=True))
    ids, mask, text = list(first.ids), list(first.mask), segments_text(fmt.render(msgs[:start], TOOLS))
    i = start
    while i < len(msgs):
        assert msgs[i].role == "assistant"
        body_text = fmt.render_assistant_body(msgs[i])
        body = tok.encode(body_text, add_special_tokens=False)
        ids += body
        mask += [1] * len(body)
        j = i + 1
        while j < len(msgs) and msgs[j].role != "assistant":
            j += 1
        gen = j < len(msgs) or final_gen
        cont_segs = fmt.render_continuation(msgs[i + 1 : j], TOOLS, add_generation_prompt=gen)
        cont = encode_segments(tok, cont_segs)
        assert not any(cont.mask), "a continuation is never trainable"
        ids += cont.ids
        mask += cont.mask
        text += body_text + segments_text(cont_segs)
        i = j
    return ids, mask, text


@SETTINGS
@given(case=_format_and(tool_loops))
def test_full_render_equals_incremental_render_on_token_ids(tokenizer, case) -> None:
    name, (msgs, start) = case
    fmt = get_format(name)
    msgs = msgs[:start] + [_normalize(fmt, m) for m in msgs[start:]]
    final_gen = msgs[-1].role != "assistant"
    ids, mask, text = _incremental(fmt, tokenizer, msgs, start, final_gen)
    full_segs = fmt.render(msgs, TOOLS, add_generation_prompt=final_gen)
    assert text == segments_text(full_segs)
    full = encode_segments(tokenizer, full_segs)
    assert ids == full.ids
    assert mask == full.mask
    # The trainable tokens are exactly the bodies of the assistant messages after `start`
    # (plus earlier turns' bodies, which the first prompt already holds with mask 1).
    assert sum(mask) == sum(
        len(tokenizer.encode(s.text, add_special_tokens=False)) for s in full_segs if s.trainable
    )


@SETTINGS
@given(case=_format_and(lambda t: assistant_messages(text_st=t)))
def test_parse_inverts_render_assistant_body(case) -> None:
    name, message = case
    fmt = get_format(name)
    body = fmt.render_assistant_body(message)
    assert body.endswith(fmt.end_of_message)
    for rendered in (body, body[: -len(fmt.end_of_message)]):  # the end marker is optional
        parsed = fmt.parse(rendered, TOOLS)
        expected = _normalize(fmt, message)
        assert parsed.reasoning == expected.reasoning
        assert parsed.content == expected.content
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
            (c.name, c.arguments) for c in expected.tool_calls
        ]
        # Typed exactly: 1 and 1.0 and True are different answers.
        for got, want in zip(parsed.tool_calls, expected.tool_calls, strict=True):
            for k, v in want.arguments.items():
                assert type(got.arguments[k]) is type(v), (k, v, got.arguments[k])


def test_generation_prompt_then_body_is_the_full_render(fmt) -> None:
    msgs = [
        Message(role="user", content="go"),
        Message(
            role="assistant",
            reasoning="r",
            content="c",
            tool_calls=[ToolCall(name="get_weather", arguments={"location": "Oslo", "days": 2})],
        ),
    ]
    prompt = segments_text(fmt.render(msgs[:1], TOOLS))
    full = fmt.render(msgs, TOOLS, add_generation_prompt=False)
    assert segments_text(full) == prompt + fmt.render_assistant_body(msgs[1]) + fmt.render_continuation([], add_generation_prompt=False)[0].text
    trainable = [s.text for s in full if s.trainable]
    assert trainable == [fmt.render_assistant_body(msgs[1])]


def test_cut_completion_continuation_adds_the_end_marker(fmt) -> None:
    tool = Message(role="tool", content="ok", name="no_args")
    closed = segments_text(fmt.render_continuation([tool], TOOLS))
    cut = segments_text(fmt.render_continuation([tool], TOOLS, completion_closed=False))
    assert cut == fmt.end_of_message + closed


def test_interleaved_thinking_drops_reasoning_before_last_user(fmt) -> None:
    msgs = [
        Message(role="user", content="first"),
        Message(role="assistant", reasoning="OLD-THOUGHT", content="a1"),
        Message(role="user", content="second"),
        Message(role="assistant", reasoning="NEW-THOUGHT", tool_calls=[ToolCall(name="no_args")]),
        Message(role="tool", content="r", name="no_args"),
        Message(role="assistant", reasoning="LATEST", content="done"),
    ]
    text = segments_text(fmt.render(msgs, TOOLS))
    assert "OLD-THOUGHT" not in text
    assert "a1" in text
    assert "NEW-THOUGHT" in text and "LATEST" in text
    # The dropped message keeps a trainable body (its content), without any think markers.
    bodies = [s.text for s in fmt.render(msgs, TOOLS) if s.trainable]
    assert bodies[0] == "a1" + fmt.end_of_message
    # A later user message drops everything before it.
    later = segments_text(fmt.render([*msgs, Message(role="user", content="third")], TOOLS))
    assert "NEW-THOUGHT" not in later and "LATEST" not in later and "OLD-THOUGHT" not in later


def test_no_tools_no_tool_instructions(fmt) -> None:
    text = segments_text(fmt.render([Message(role="user", content="hi")]))
    assert fmt.tool_call_start not in text
    with_tools = segments_text(fmt.render([Message(role="user", content="hi")], TOOLS))
    assert '"all_types"' in with_tools


# --- free text never forges a marker (issue 27) --------------------------------------------------


def _neutral_value(value: Any) -> Any:
    if isinstance(value, str):
        return "x" if value else ""
    if isinstance(value, dict):
        return {f"k{i}": _neutral_value(v) for i, v in enumerate(value.values())}
    if isinstance(value, list):
        return [_neutral_value(v) for v in value]
    return value


def _neutral(m: Message) -> Message:
    """The same message with every piece of free text replaced by marker-free text."""
    return m.model_copy(
        update={
            "content": "x" if m.content else "",
            "reasoning": None if m.reasoning is None else ("x" if m.reasoning else ""),
            "tool_calls": [
                c.model_copy(update={"arguments": {k: _neutral_value(v) for k, v in c.arguments.items()}})
                for c in m.tool_calls
            ],
        }
    )


@functools.cache
def _tokenizer_for(name: str):
    """The default tokenizer with the format's markers as special tokens (none added for the
    built-ins); a copy, so the shared one is never mutated."""
    return prepare_tokenizer(copy.deepcopy(load_default_tokenizer()), get_format(name))


@SETTINGS
@given(case=_format_and(tool_loops))
def test_free_text_never_adds_a_marker_in_text_or_tokens(case) -> None:
    """Whatever the messages carry, the rendered conversation holds exactly the markers the
    format itself writes: each marker occurs as often as with marker-free text, and each special
    token id as often too (no text becomes a special token)."""
    name, (msgs, _start) = case
    fmt = get_format(name)
    neutral = [_neutral(m) for m in msgs]
    hostile_segs, neutral_segs = fmt.render(msgs, TOOLS), fmt.render(neutral, TOOLS)
    hostile_text_, neutral_text = segments_text(hostile_segs), segments_text(neutral_segs)
    for marker in reserved_markers(fmt):
        assert hostile_text_.count(marker) == neutral_text.count(marker), marker
    tok = _tokenizer_for(name)
    hostile_ids = encode_segments(tok, hostile_segs).ids
    neutral_ids = encode_segments(tok, neutral_segs).ids
    for marker in fmt.special_tokens:
        (marker_id,) = tok.encode(marker, add_special_tokens=False)
        assert hostile_ids.count(marker_id) == neutral_ids.count(marker_id), marker
    # Byte-level: the model reads exactly the escaped text (nothing dropped by the tokenizer).
    assert tok.decode(hostile_ids) == hostile_text_


@SETTINGS
@given(case=_format_and(lambda t: t))
def test_escape_round_trips_and_leaves_marker_free_text_alone(case) -> None:
    name, value = case
    escaper = MarkerEscaper(reserved_markers(get_format(name)))
    escaped = escaper.escape(value, "", "")
    assert escaper.find_marker(escaped) is None
    assert escaper.unescape(escaped, "value") == value
    if escaper.find_marker(value) is None and MARKER_BREAK not in value:
        assert escaped == value


def test_marker_heavy_text_renders_and_parses_fast(fmt) -> None:
    soup = "".join(reserved_markers(fmt)) * 2000 + MARKER_BREAK * 1000
    message = Message(role="assistant", reasoning=soup, content=soup, tool_calls=[ToolCall(name="get_weather", arguments={"location": soup})])
    t0 = time.perf_counter()
    fmt.render([Message(role="user", content=soup), message, Message(role="tool", content=soup, name="get_weather")], TOOLS)
    parsed = fmt.parse(fmt.render_assistant_body(message), TOOLS)
    assert time.perf_counter() - t0 < 2.0
    assert parsed.content == soup and parsed.tool_calls[0].arguments["location"] == soup


# --- the public registry -------------------------------------------------------------------------


def test_register_format_refuses_a_taken_name_and_bad_markers() -> None:
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="already registered"):
        register_format(type("Clash", (TaggedLinesFormat,), {"name": "hermes"}))
    with pytest.raises(ConfigError, match="at least 2 characters"):
        register_format(type("OneChar", (TaggedLinesFormat,), {"name": "one_char", "end_of_message": "$"}))
    with pytest.raises(ConfigError, match="does not set"):
        register_format(type("Bare", (ChatFormat,), {"render": None}))
    assert "one_char" not in list_formats()
    register_format(TaggedLinesFormat)  # the same class again: a no-op, not a clash
    with pytest.raises(KeyError, match="no chat format named 'nope'"):
        unregister_format("nope")


# --- parser robustness ------------------------------------------------------------------------

_FRAGMENTS = [
    "<think>", "</think>", "\n", " ", "x", "é", "日", "{", "}", "[", "]", ",", ":", '"', "1", "null",
    '"name"', '"arguments"', '"get_weather"', '"location"', "get_weather", "all_types",
    "<minimax:tool_call>", "</minimax:tool_call>", '<invoke name="', '">', "</invoke>",
    '<parameter name="', "</parameter>", "[e~[", "<tool_call>", "</tool_call>", "<|im_end|>",
    "<|think|>", "<|/think|>", "<|tool_calls|>", "<|end|>", "p_integer", "p_string",
    "]~b]user", "<|im_start|>", "<|user|>", "<response>", "</response>", "<<call>>", "<<eot>>",
    "<</reason>>", "<<reason>>", MARKER_BREAK, MARKER_BREAK * 2, "\\u003c",
]


def _parse_or_parse_error(fmt: ChatFormat, text: str, tools=TOOLS) -> ParsedCompletion | None:
    try:
        result = fmt.parse(text, tools)
    except ParseError as e:
        assert str(e), "a ParseError must say what was wrong"
        return None
    assert isinstance(result, ParsedCompletion)
    return result


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=40), name=st.sampled_from(FORMATS))
def test_parsers_raise_only_parse_error_on_marker_soup(pieces, name) -> None:
    fmt = get_format(name)
    _parse_or_parse_error(fmt, "".join(pieces))
    _parse_or_parse_error(fmt, "".join(pieces), tools=())


@settings(max_examples=150, deadline=None)
@given(
    message=assistant_messages(with_calls=True),
    name=st.sampled_from(FORMATS),
    cut=st.integers(0, 10_000),
    insert=st.sampled_from(_FRAGMENTS),
    data=st.data(),
)
def test_parsers_raise_only_parse_error_on_mutated_bodies(message, name, cut, insert, data) -> None:
    fmt = get_format(name)
    body = fmt.render_assistant_body(message)
    cut %= len(body) + 1
    _parse_or_parse_error(fmt, body[:cut])  # truncated anywhere
    _parse_or_parse_error(fmt, body[:cut] + insert + body[cut:])  # a stray fragment
    end = data.draw(st.integers(cut, len(body)))
    _parse_or_parse_error(fmt, body[:cut] + body[end:])  # a slice deleted


@pytest.mark.parametrize(
    "text",
    [
        "<minimax:tool_call>" + '<invoke name="a">' * 20_000,
        '<parameter name="' * 12_000,
        "x" * 200_000,
        "[" * 200_000,
        "<tool_call>" + "[" * 200_000,
        "<|tool_calls|>" + "[" * 200_000,
        "<think>" * 30_000,
        "{" * 200_000 + "</tool_call>",
        '<tool_call>{"name": "no_args", "arguments": {}}</tool_call>' * 4000,
    ],
)
def test_parsers_are_fast_on_long_input(fmt, text) -> None:
    t0 = time.perf_counter()
    _parse_or_parse_error(fmt, text)
    _parse_or_parse_error(fmt, "</think>\n\n" + text)
    assert time.perf_counter() - t0 < 2.0


def test_long_valid_completion_parses_fast(fmt) -> None:
    calls = [ToolCall(name="get_weather", arguments={"location": "x" * 50, "days": i}) for i in range(2000)]
    body = fmt.render_assistant_body(Message(role="assistant", reasoning="r" * 100_000, content="c", tool_calls=calls))
    t0 = time.perf_counter()
    parsed = fmt.parse(body, TOOLS)
    assert time.perf_counter() - t0 < 2.0
    assert len(parsed.tool_calls) == 2000 and parsed.tool_calls[-1].arguments["days"] == 1999
