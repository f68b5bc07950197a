"""Replies coming back from a black-box agent are matched to the completion the gateway returned at
that place in the conversation (issue 27 item 7): dropped reasoning is restored from that
completion, not from another with the same content, and an echo of its parsed values (`57` for a
sampled ` 57`, `0.5` for `0.50`) reuses the sampled tokens, so the next prompt stays an exact
extension of the call it continues. Through the official `openai` client on a live gateway."""

from __future__ import annotations

import json

import pytest

from .conftest import MODEL

SCALE_TOOL = {"type": "function", "function": {
    "name": "scale", "description": "Scale a count by a factor.",
    "parameters": {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}},
                   "required": ["n", "x"]}}}
LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Price of an item.",
    "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}}}


def _call_reply(reasoning: str, invoke: str, content: str = "Calling.") -> str:
    """A completion as the model samples it after the prompt's `<think>`."""
    return f"{reasoning}\n</think>\n\n{content}\n<minimax:tool_call>\n{invoke}</minimax:tool_call>[e~["


LOOKUP_FIG = '<invoke name="lookup">\n<parameter name="item">fig</parameter>\n</invoke>\n'


def _echo(message, *, keep_reasoning: bool) -> dict:
    """The assistant message as an agent sends it back: parsed arguments re-serialised as JSON."""
    out = {"role": "assistant", "content": message.content or ""}
    if keep_reasoning:
        out["reasoning_content"] = message.model_extra.get("reasoning_content")
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.function.name, "arguments": json.dumps(json.loads(c.function.arguments))}}
            for c in message.tool_calls]
    return out


def _tool_results(message) -> list[dict]:
    return [{"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in message.tool_calls or []]


def _decoded_prompt(live, traj, index: int) -> str:
    return live.gateway.engine.tokenizer.decode(traj.calls[index].prompt_ids, skip_special_tokens=False)


def _extends(traj, child: int, parent: int) -> bool:
    p = traj.calls[parent]
    return traj.calls[child].prompt_ids[: len(p.prompt_ids) + len(p.completion_ids)] == p.prompt_ids + p.completion_ids


def test_equal_replies_at_two_turns_get_their_own_reasoning_back(live_gateway):
    """The same call twice in one conversation, thought about differently: each turn's reasoning
    comes back at its own place (by content, both would get the newest)."""
    live = live_gateway(replies=[_call_reply("first thought", LOOKUP_FIG), _call_reply("second thought", LOOKUP_FIG),
                                 "done\n</think>\n\nAll done.[e~["])
    s = live.open()
    client = live.client(s)
    messages: list[dict] = [{"role": "user", "content": "price of fig, twice"}]
    for _ in range(3):
        reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[LOOKUP_TOOL]).choices[0].message
        messages += [_echo(reply, keep_reasoning=False), *_tool_results(reply)]
    traj = live.gateway.sessions[s["session_id"]].trajectory
    notes = traj.metadata["gateway"]["calls"]
    assert [n["parent"] for n in notes] == [None, 0, 1] and traj.metadata["new_roots"] == [0]
    assert [n["restored_reasoning"] for n in notes] == [0, 1, 2]
    assert _extends(traj, 1, 0) and _extends(traj, 2, 1)
    last = _decoded_prompt(live, traj, 2)
    assert last.index("first thought") < last.index("second thought")


@pytest.mark.parametrize("keep_ids", [True, False])
def test_two_identical_calls_with_different_reasoning_are_told_apart(live_gateway, keep_ids):
    """One prompt sampled twice: equal content and calls, different reasoning. Continuing either
    conversation restores that one's reasoning when the client keeps the tool-call ids the gateway
    returned; without ids the gateway cannot know which came back and restores nothing rather than
    guess (a new root, no foreign reasoning)."""
    live = live_gateway(replies=[_call_reply("plan A", LOOKUP_FIG), _call_reply("plan B", LOOKUP_FIG),
                                 "a\n</think>\n\nA.[e~[", "b\n</think>\n\nB.[e~["])
    s = live.open()
    client = live.client(s)
    start = [{"role": "user", "content": "price of fig"}]
    first, second = (client.chat.completions.create(model=MODEL, messages=start, tools=[LOOKUP_TOOL]).choices[0].message
                     for _ in range(2))
    assert first.tool_calls[0].id != second.tool_calls[0].id
    for reply in (first, second):
        echo = _echo(reply, keep_reasoning=False)
        results = _tool_results(reply)
        if not keep_ids:
            for call, result in zip(echo["tool_calls"], results, strict=True):
                call["id"] = result["tool_call_id"] = "call_0"  # a client that renumbers ids
        client.chat.completions.create(model=MODEL, messages=[*start, echo, *results], tools=[LOOKUP_TOOL])
    traj = live.gateway.sessions[s["session_id"]].trajectory
    notes = traj.metadata["gateway"]["calls"]
    prompt_a, prompt_b = _decoded_prompt(live, traj, 2), _decoded_prompt(live, traj, 3)
    assert "plan B" not in prompt_a and "plan A" not in prompt_b  # never the other sample's reasoning
    if keep_ids:
        assert [notes[2]["parent"], notes[3]["parent"]] == [0, 1]
        assert "plan A" in prompt_a and "plan B" in prompt_b and _extends(traj, 2, 0) and _extends(traj, 3, 1)
    else:
        assert [notes[2]["restored_reasoning"], notes[3]["restored_reasoning"]] == [0, 0]
        assert notes[2]["parent"] is None and notes[3]["parent"] is None


@pytest.mark.parametrize("keep_reasoning", [True, False])
def test_an_echo_of_parsed_arguments_keeps_the_sampled_tokens(live_gateway, m2_tokenizer, keep_reasoning):
    """The model wrote ` 57` and `0.50`; the agent sends back JSON 57 and 0.5. The next prompt is
    the first call's prompt + completion ids followed by the new messages."""
    invoke = '<invoke name="scale">\n<parameter name="n"> 57</parameter>\n<parameter name="x">0.50</parameter>\n</invoke>\n'
    live = live_gateway(replies=[_call_reply("scale it", invoke), "ok\n</think>\n\n28.5[e~["])
    s = live.open()
    client = live.client(s)
    messages: list[dict] = [{"role": "user", "content": "scale 57 by 0.50"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[SCALE_TOOL]).choices[0].message
    assert json.loads(reply.tool_calls[0].function.arguments) == {"n": 57, "x": 0.5}
    messages += [_echo(reply, keep_reasoning=keep_reasoning), *_tool_results(reply)]
    client.chat.completions.create(model=MODEL, messages=messages, tools=[SCALE_TOOL])
    traj = live.gateway.sessions[s["session_id"]].trajectory
    note = traj.metadata["gateway"]["calls"][1]
    assert _extends(traj, 1, 0) and note["parent"] == 0 and note["echo_spliced"] == 1
    assert traj.metadata["new_roots"] == [0]
    prompt = _decoded_prompt(live, traj, 1)
    assert "> 57</parameter>" in prompt and ">0.50</parameter>" in prompt
    assert prompt.endswith("]~b]tool\n<response>ok</response>[e~[\n]~b]ai\n<think>\n")


def test_an_echo_with_changed_values_is_not_the_sample(live_gateway):
    """An agent that edits the arguments did not echo the completion: its render is used as sent."""
    invoke = '<invoke name="scale">\n<parameter name="n"> 57</parameter>\n<parameter name="x">0.50</parameter>\n</invoke>\n'
    live = live_gateway(replies=[_call_reply("scale it", invoke), "ok\n</think>\n\ndone[e~["])
    s = live.open()
    client = live.client(s)
    messages: list[dict] = [{"role": "user", "content": "scale"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=[SCALE_TOOL]).choices[0].message
    echo = _echo(reply, keep_reasoning=True)
    echo["tool_calls"][0]["function"]["arguments"] = json.dumps({"n": 58, "x": 0.5})
    client.chat.completions.create(model=MODEL, messages=[*messages, echo, *_tool_results(reply)], tools=[SCALE_TOOL])
    traj = live.gateway.sessions[s["session_id"]].trajectory
    note = traj.metadata["gateway"]["calls"][1]
    assert note["parent"] is None and note["echo_spliced"] == 0
    assert '"n">58</parameter>' in _decoded_prompt(live, traj, 1)
