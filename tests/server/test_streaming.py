"""DeltaSplitter: however the completion text arrives, the streamed deltas add up to the parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.chat import get_format
from forgerl.server.streaming import DeltaSplitter, IncrementalDecoder, cut_at_markers, partial_marker_len
from forgerl.types import Message, ToolCall, ToolSpec

TOOLS = [ToolSpec(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})]
# Text that is not a marker but looks like the start of one now and then ("<", "/", "th", "[e").
_text = st.text(alphabet=st.sampled_from(list("ab <>/th[e~\n ")), max_size=30)


def _splitter(fmt, stops=()) -> DeltaSplitter:
    return DeltaSplitter(
        think_start=fmt.think_start, think_end=fmt.think_end, tool_call_start=fmt.tool_call_start,
        stop_markers=[fmt.end_of_message, *stops], in_think=fmt.prompt_opens_think,
        think_pad=getattr(fmt, "think_pad", ""), think_sep=getattr(fmt, "think_sep", ""),
    )


def _run(fmt, text: str, cuts: list[int]) -> tuple[dict[str, str], list[tuple[str, str]], object]:
    """Feed growing prefixes of `text` (cut at `cuts`), then finish with the format's parse."""
    sp = _splitter(fmt)
    deltas: list[tuple[str, str]] = []
    for c in sorted(set(cuts)) + [len(text)]:
        deltas += sp.feed(text[:c])
    parsed = fmt.parse(text.removesuffix(fmt.end_of_message), TOOLS)
    deltas += sp.finish(parsed)
    got = {"reasoning": "", "content": ""}
    for ch, piece in deltas:
        got[ch] += piece
    return got, deltas, parsed


@pytest.mark.parametrize("fmt_name", ["minimax_m2", "hermes", "json_tools"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_streamed_deltas_add_up_to_the_parse(fmt_name, data):
    fmt = get_format(fmt_name)
    reasoning = data.draw(st.one_of(st.none(), _text), label="reasoning")
    content = data.draw(_text, label="content")
    calls = data.draw(st.lists(st.builds(lambda q: ToolCall(name="lookup", arguments={"q": q}), _text), max_size=2))
    msg = Message(role="assistant", content=content, reasoning=reasoning, tool_calls=calls)
    text = fmt.render_assistant_body(msg)
    try:
        fmt.parse(text, TOOLS)
    except ValueError:
        return  # e.g. content that happens to spell a marker: not a streaming question
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12), label="cuts")
    got, deltas, parsed = _run(fmt, text, cuts)
    assert got["reasoning"] == (parsed.reasoning or "")
    assert got["content"] == parsed.content
    for _, piece in deltas:
        for marker in (fmt.think_end, fmt.tool_call_start, fmt.end_of_message):
            # content may legitimately carry marker text (escaped when rendered, unescaped for the
            # client); otherwise no delta may leak the format's own scaffolding
            if marker not in (parsed.reasoning or "") and marker not in parsed.content:
                assert marker not in piece


def test_reasoning_streams_before_the_think_ends():
    fmt = get_format("minimax_m2")
    sp = _splitter(fmt)
    assert sp.feed("I am thinking") == [("reasoning", "I am thinking")]
    assert sp.feed("I am thinking about it\n</thi") == [("reasoning", " about it")]  # "\n</thi" held back
    assert sp.feed("I am thinking about it\n</think>\n\nHi") == [("content", "Hi")]


def test_tool_call_block_is_held_back():
    fmt = get_format("minimax_m2")
    sp = _splitter(fmt)
    text = 'r\n</think>\n\nChecking.\n<minimax:tool_call>\n<invoke name="lookup">'
    deltas = sp.feed(text)
    assert deltas == [("reasoning", "r"), ("content", "Checking.")]
    assert sp.saw_tool_call
    assert sp.feed(text + '\n<parameter name="q">x</parameter>') == []


def test_unparseable_completion_flushes_the_raw_rest():
    fmt = get_format("minimax_m2")
    sp = _splitter(fmt)
    sp.feed("still thinking, cut by the token lim")
    assert sp.finish(None) == []  # everything was already streamed as reasoning
    sp2 = _splitter(fmt)
    sp2.feed("r\n</think>\n\nx <minimax:tool_call> broken")
    assert sp2.finish(None) == [("content", "<minimax:tool_call> broken")]


def test_partial_utf8_is_held_back():
    fmt = get_format("hermes")
    sp = _splitter(fmt)
    assert sp.feed("caf\ufffd") == [("content", "caf")]
    assert sp.feed("café!") == [("content", "é!")]


def test_marker_helpers():
    assert cut_at_markers("abc[e~[def STOP", ["STOP", "[e~["]) == "abc"
    assert partial_marker_len("hello </th", ["</think>"]) == 4
    assert partial_marker_len("hello", ["</think>"]) == 0
    assert partial_marker_len("x[e~", ["[e~[", "~"]) == 3


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(st.sampled_from(list("ab é你🙂\n<") + ["</think>", "[e~["]), max_size=40))
def test_incremental_decoder_equals_full_decode(m2_tokenizer, parts):
    text = "".join(parts)
    ids = m2_tokenizer.encode(text, add_special_tokens=False)
    dec = IncrementalDecoder(lambda xs: m2_tokenizer.decode(xs, skip_special_tokens=False))
    pieces = [dec.push(t) for t in ids]
    assert dec.text == "".join(pieces) == m2_tokenizer.decode(ids, skip_special_tokens=False)
    assert all("\ufffd" not in p for p in pieces)  # half characters are never sent
