"""The server seen through the official `openai` client, against a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

MODEL = "forgerl-test"  # the name the `live` fixture serves (conftest.MODEL)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}

PLAIN_REPLY = "The user greets me.\n</think>\n\nHello there! How can I help?[e~["
CALL_REPLY = (
    "Need the weather for Paris.\n</think>\n\nLet me check.\n<minimax:tool_call>\n"
    '<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
    '<parameter name="days">3</parameter>\n</invoke>\n</minimax:tool_call>[e~['
)


def _extra(obj: Any, name: str) -> Any:
    return (obj.model_extra or {}).get(name)


def _stream(client, **kwargs) -> tuple[dict[str, Any], list[Any]]:
    """Reassemble a streamed completion the way a client would."""
    chunks = list(client.chat.completions.create(model=MODEL, stream=True, **kwargs))
    out: dict[str, Any] = {"content": "", "reasoning": "", "tool_calls": [], "finish": None, "usage": None}
    for ch in chunks:
        if ch.usage is not None:
            out["usage"] = ch.usage
        for choice in ch.choices:
            d = choice.delta
            out["content"] += d.content or ""
            out["reasoning"] += _extra(d, "reasoning_content") or ""
            out["tool_calls"] += d.tool_calls or []
            if choice.finish_reason:
                out["finish"] = choice.finish_reason
    return out, chunks


def test_models_lists_the_served_model(client, live):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_plain_completion(client, live, m2_tokenizer):
    engine = live.script([PLAIN_REPLY])
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=64, temperature=0.7, seed=7,
    )
    msg = resp.choices[0].message
    assert msg.content == "Hello there! How can I help?"
    assert _extra(msg, "reasoning_content") == "The user greets me."
    assert msg.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    n_completion = len(m2_tokenizer.encode(PLAIN_REPLY, add_special_tokens=False))
    assert resp.usage.prompt_tokens == len(engine.prompts[0])
    assert resp.usage.completion_tokens == n_completion
    assert resp.usage.total_tokens == len(engine.prompts[0]) + n_completion
    assert resp.usage.prompt_tokens_details.cached_tokens == 0
    # The prompt is the M2 render: it ends with the generation prompt that opens <think>.
    prompt_text = m2_tokenizer.decode(engine.prompts[0])
    assert prompt_text.startswith("]~!b[]~b]system\n") and prompt_text.endswith("]~b]user\nHi[e~[\n]~b]ai\n<think>\n")
    params = live.engine.params[0]
    assert params.max_tokens == 64 and params.temperature == 0.7 and params.seed == 7
    assert m2_tokenizer.convert_tokens_to_ids("[e~[") in params.stop_token_ids


def test_streaming_matches_non_streaming(client, live):
    live.script([PLAIN_REPLY, PLAIN_REPLY])
    messages = [{"role": "user", "content": "Hi"}]
    full = client.chat.completions.create(model=MODEL, messages=messages)
    got, chunks = _stream(client, messages=messages, stream_options={"include_usage": True})
    assert got["content"] == full.choices[0].message.content
    assert got["reasoning"] == _extra(full.choices[0].message, "reasoning_content")
    assert got["finish"] == "stop"
    assert got["usage"].completion_tokens == full.usage.completion_tokens
    assert got["usage"].prompt_tokens == full.usage.prompt_tokens
    # Really incremental: several content and reasoning chunks, and no marker leaks into any delta.
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert sum(1 for d in deltas if d.content) > 2
    assert sum(1 for d in deltas if _extra(d, "reasoning_content")) > 1
    assert all("</think>" not in (d.content or "") + (_extra(d, "reasoning_content") or "") for d in deltas)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the usage chunk comes last


def test_tool_calls(client, live):
    live.script([CALL_REPLY])
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL],
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert _extra(choice.message, "reasoning_content") == "Need the weather for Paris."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}  # typed through the schema


def test_tool_calls_streamed(client, live):
    live.script([CALL_REPLY])
    got, chunks = _stream(client, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    assert got["finish"] == "tool_calls"
    assert got["content"] == "Let me check."
    assert "minimax" not in got["content"]  # the call block was held back, not streamed as text
    [call] = got["tool_calls"]
    assert call.index == 0 and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}


def test_tool_choice_none_renders_no_tools(client, live, m2_tokenizer):
    engine = live.script([PLAIN_REPLY, PLAIN_REPLY])
    messages = [{"role": "user", "content": "Hi"}]
    client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="none")
    assert "get_weather" in m2_tokenizer.decode(engine.prompts[0])
    assert "get_weather" not in m2_tokenizer.decode(engine.prompts[1])


def test_reasoning_round_trip_follows_interleaved_thinking(client, live, m2_tokenizer):
    """Turn 1 calls a tool; the client sends the call back with its reasoning_content and the tool
    result. Inside the user turn the reasoning must be in the next prompt, which must extend the
    previous prompt + completion token for token; after a new user message it must be dropped."""
    final = "The tool says sunny.\n</think>\n\nIt is sunny in Paris.[e~["
    engine = live.script([CALL_REPLY, final, PLAIN_REPLY])
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    r1 = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                        extra_body={"return_token_ids": True})
    m1 = r1.choices[0].message
    messages.append({
        "role": "assistant", "content": m1.content, "reasoning_content": _extra(m1, "reasoning_content"),
        "tool_calls": [tc.model_dump() for tc in m1.tool_calls],
    })
    messages.append({"role": "tool", "tool_call_id": m1.tool_calls[0].id, "content": '{"sky": "sunny"}'})
    r2 = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "It is sunny in Paris."
    p1, c1, p2 = engine.prompts[0], _extra(r1.choices[0], "token_ids"), engine.prompts[1]
    assert p2[: len(p1) + len(c1)] == p1 + c1  # append-only context within the turn
    assert "Need the weather for Paris." in m2_tokenizer.decode(p2)
    assert "<response>{\"sky\": \"sunny\"}</response>" in m2_tokenizer.decode(p2)

    messages.append({"role": "assistant", "content": "It is sunny in Paris.",
                     "reasoning_content": "The tool says sunny."})
    messages.append({"role": "user", "content": "Thanks!"})
    client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    p3 = m2_tokenizer.decode(engine.prompts[2])
    assert "Need the weather for Paris." not in p3 and "The tool says sunny." not in p3
    assert "It is sunny in Paris." in p3


def test_inline_think_in_assistant_content_is_reasoning(client, live, m2_tokenizer):
    engine = live.script([PLAIN_REPLY])
    messages = [
        {"role": "user", "content": "Add 2 and 2."},
        {"role": "assistant", "content": "<think>\nSimple sum.\n</think>\n\nCalling nothing, it is 4."},
        {"role": "tool", "tool_call_id": "x", "content": "ok"},
    ]
    client.chat.completions.create(model=MODEL, messages=messages)
    text = m2_tokenizer.decode(engine.prompts[0])
    # Rendered as a think block by the format (not as literal content text).
    assert "]~b]ai\n<think>\nSimple sum.\n</think>\n\nCalling nothing, it is 4.[e~[" in text


def test_return_token_ids_and_logprobs(client, live, m2_tokenizer):
    engine = live.script([PLAIN_REPLY], logprob=-0.25)
    engine.policy_version = 5
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], logprobs=True,
        extra_body={"return_token_ids": True},
    )
    ids = m2_tokenizer.encode(PLAIN_REPLY, add_special_tokens=False)
    assert _extra(resp, "prompt_token_ids") == engine.prompts[0]
    assert _extra(resp.choices[0], "token_ids") == ids
    ext = _extra(resp, "forgerl")
    assert ext == {"prompt_ids": engine.prompts[0], "completion_ids": ids,
                   "completion_logprobs": [-0.25] * len(ids), "policy_version": 5}
    entries = resp.choices[0].logprobs.content
    assert len(entries) == len(ids) and all(e.logprob == -0.25 for e in entries)
    assert "".join(e.token for e in entries) == m2_tokenizer.decode(ids)
    assert all(bytes(e.bytes) == e.token.encode() for e in entries)


def test_no_extension_fields_unless_asked(client, live):
    live.script([PLAIN_REPLY])
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert _extra(resp, "forgerl") is None and _extra(resp, "prompt_token_ids") is None
    assert resp.choices[0].logprobs is None


def test_return_token_ids_streamed(client, live, m2_tokenizer):
    engine = live.script([PLAIN_REPLY])
    _, chunks = _stream(client, messages=[{"role": "user", "content": "Hi"}], extra_body={"return_token_ids": True})
    ids = m2_tokenizer.encode(PLAIN_REPLY, add_special_tokens=False)
    assert _extra(chunks[0], "prompt_token_ids") == engine.prompts[0]
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert _extra(final.choices[0], "token_ids") == ids
    assert _extra(final, "forgerl")["completion_ids"] == ids


def test_stop_strings_are_passed_and_stripped(client, live):
    live.script(["Short.\n</think>\n\nOne, two, STOP three[e~["])
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count"}], stop=["STOP"],
        extra_body={"top_k": 40}, top_p=0.9,
    )
    assert resp.choices[0].message.content == "One, two, "
    params = live.engine.params[0]
    assert "STOP" in params.stop and params.top_k == 40 and params.top_p == 0.9


def test_length_limit_and_unparseable_completion(client, live, m2_tokenizer):
    live.script([PLAIN_REPLY])
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    ids = m2_tokenizer.encode(PLAIN_REPLY, add_special_tokens=False)[:3]
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 3
    # Cut before </think>: the format cannot parse it, so the raw text comes back as content.
    assert resp.choices[0].message.content == m2_tokenizer.decode(ids)


def test_malformed_tool_call_comes_back_as_text(client, live):
    bad = "Hmm.\n</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n</minimax:tool_call>[e~["
    live.script([bad])
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL],
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content == bad.removesuffix("[e~[")


@pytest.mark.parametrize("max_field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_spellings(client, live, max_field):
    live.script([PLAIN_REPLY])
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], **{max_field: 11})
    assert live.engine.params[0].max_tokens == 11


def test_tool_choice_none_returns_a_stray_call_as_text(client, live):
    live.script([CALL_REPLY])
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], tool_choice="none",
    )
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    assert "<invoke name=\"get_weather\">" in resp.choices[0].message.content


def test_logprob_bytes_are_exact_for_split_characters(client, live, m2_tokenizer):
    reply = "ok\n</think>\n\nSmile 🙂 and 你好.[e~["
    live.script([reply])
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], logprobs=True)
    entries = resp.choices[0].logprobs.content
    assert any(e.token == "\ufffd" for e in entries)  # the emoji is split over several tokens here
    assert bytes(b for e in entries for b in e.bytes) == reply.encode()
