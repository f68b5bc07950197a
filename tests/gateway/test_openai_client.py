"""The gateway seen through the official `openai` client, against a real uvicorn on 127.0.0.1:
recording, branch reconciliation, tool calls and streaming."""

from __future__ import annotations

import json

from forgerl.chat.base import encode_segments
from forgerl.engine.scripted import ScriptedEngine
from forgerl.server.convert import to_messages
from forgerl.server.protocol import ChatMessageIn
from forgerl.types import Message, ToolSpec

from .conftest import MODEL
from .helpers import gold_replies


def _assistant(reply, inline: bool = False) -> dict:
    """The assistant message an agent sends back, from the SDK's message object."""
    reasoning = reply.model_extra.get("reasoning_content")
    msg = {"role": "assistant", "content": reply.content or ""}
    if inline:
        msg["content"] = f"<think>\n{reasoning}\n</think>\n\n{msg['content']}"
    else:
        msg["reasoning_content"] = reasoning
    if reply.tool_calls:
        msg["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": c.function.arguments}}
                             for c in reply.tool_calls]
    return msg


def _full_render_ids(tok, fmt, messages, tools):
    msgs = to_messages([ChatMessageIn.model_validate(m) for m in messages], fmt.think_start, fmt.think_end)
    specs = [ToolSpec(**t["function"]) for t in tools]
    return encode_segments(tok, fmt.render(msgs, specs)).ids


def test_tool_calls_are_recorded_with_exact_ids_and_extend_one_branch(live_gateway, m2_tokenizer, m2_format):
    replies = gold_replies(m2_format, seed=5)
    live = live_gateway(replies=replies)
    engine = live.gateway.engine
    s = live.open(family="tool-reasoning", seed=5, difficulty=1)
    client = live.client(s)
    messages, tools = list(s["messages"]), s["tools"]
    requests = []
    for i, _ in enumerate(replies):
        requests.append(list(messages))
        resp = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, max_tokens=200)
        reply = resp.choices[0].message
        assert resp.choices[0].finish_reason == "tool_calls" and reply.tool_calls
        messages.append(_assistant(reply, inline=(i % 2 == 1)))  # reasoning back both ways
        for call in reply.tool_calls:
            out = live.http.post(f"/sessions/{s['session_id']}/v1/tools/call",
                                 json={"name": call.function.name, "arguments": call.function.arguments, "id": call.id},
                                 headers={"Authorization": f"Bearer {s['api_key']}"}).json()
            assert not out["is_error"], out
            messages.append({"role": "tool", "tool_call_id": call.id, "content": out["content"]})
    ended = live.end(s)
    assert ended["reward"] == 1.0 and ended["status"] == "completed" and ended["calls"] == len(replies)
    traj = live.gateway.finished[s["session_id"]]
    for call, prompt, text in zip(traj.calls, engine.prompts, replies, strict=True):
        assert call.prompt_ids == prompt  # what the engine really got
        assert call.completion_ids == m2_tokenizer.encode(text, add_special_tokens=False)
        assert call.completion_logprobs == [-0.5] * len(call.completion_ids)
        assert call.policy_version == 0 and call.loss_mask == [1] * len(call.completion_ids)
    # every call extends the previous one: one branch, prompt = previous prompt + completion + new tokens
    notes = traj.metadata["gateway"]["calls"]
    assert [n["branch"] for n in notes] == [0] * len(replies)
    assert [n["parent"] for n in notes] == [None, *range(len(replies) - 1)]
    assert traj.metadata["new_roots"] == [0]
    for prev, call in zip(traj.calls, traj.calls[1:], strict=False):
        assert call.prompt_ids[: len(prev.prompt_ids) + len(prev.completion_ids)] == prev.prompt_ids + prev.completion_ids
    # and here (canonical completions) that is also exactly the chat format's full render
    for call, request in zip(traj.calls, requests, strict=True):
        assert call.prompt_ids == _full_render_ids(m2_tokenizer, m2_format, request, tools)
    assert not any(n["retokenized"] for n in notes)


def _body(fmt, reasoning: str, content: str) -> str:
    return fmt.render_assistant_body(Message(role="assistant", content=content, reasoning=reasoning))


def _back(resp) -> dict:
    m = resp.choices[0].message
    return {"role": "assistant", "content": m.content, "reasoning_content": m.model_extra.get("reasoning_content")}


def test_rewritten_history_starts_a_new_branch(live_gateway, m2_format):
    live = live_gateway(replies=[_body(m2_format, f"think {i}", f"answer {i}") for i in range(4)])
    s = live.open()
    client = live.client(s)
    messages = [{"role": "user", "content": "hello"}]
    messages += [_back(client.chat.completions.create(model=MODEL, messages=messages)),
                 {"role": "tool", "tool_call_id": "t1", "content": "observation"}]
    messages += [_back(client.chat.completions.create(model=MODEL, messages=messages)),
                 {"role": "user", "content": "a new user turn"}]
    client.chat.completions.create(model=MODEL, messages=messages)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "summary: hello"}])
    traj = live.gateway.sessions[s["session_id"]].trajectory
    notes = traj.metadata["gateway"]["calls"]
    assert notes[1]["parent"] == 0 and notes[1]["reason"] == "extends"
    # M2 drops the reasoning of earlier turns at a new user message: the render is no longer an
    # extension of the sampled context, so the chain honestly breaks (DESIGN contract 2)
    assert notes[2]["parent"] is None and notes[2]["reason"].startswith("history rewritten")
    assert notes[3]["parent"] is None and len({n["branch"] for n in notes}) == 3
    assert traj.metadata["new_roots"] == [0, 2, 3]


def test_same_history_twice_forks(live_gateway, m2_format):
    live = live_gateway(replies=[_body(m2_format, "r", c) for c in "abc"])
    s = live.open()
    client = live.client(s)
    first = [{"role": "user", "content": "q"}]
    follow = first + [_back(client.chat.completions.create(model=MODEL, messages=first)),
                      {"role": "tool", "content": "x", "tool_call_id": "t"}]
    client.chat.completions.create(model=MODEL, messages=follow)
    client.chat.completions.create(model=MODEL, messages=follow)  # a retry of the same step
    notes = live.gateway.sessions[s["session_id"]].trajectory.metadata["gateway"]["calls"]
    assert notes[1]["parent"] == 0 and notes[1]["branch"] == notes[0]["branch"]
    assert notes[2]["parent"] == 0 and notes[2]["reason"].startswith("fork") and notes[2]["branch"] != notes[0]["branch"]


class _NonCanonicalEngine(ScriptedEngine):
    """Samples each character as its own token: a valid but non-canonical tokenization, like a real
    model's samples often are. Re-encoding its text would give *different* ids."""

    async def stream(self, prompt_ids, params, session_id=None):
        text = self._reply_text(prompt_ids)
        self.prompts.append(list(prompt_ids))
        ids = [i for ch in text for i in self.tokenizer.encode(ch, add_special_tokens=False)]
        from forgerl.engine.base import GenerationResult, TokenEvent

        for t in ids:
            yield TokenEvent(t, -1.0)
        yield GenerationResult(ids, [-1.0] * len(ids), "stop", self.policy_version, len(prompt_ids))


def test_sampled_ids_are_kept_not_re_encoded(live_gateway, m2_tokenizer, m2_format):
    replies = gold_replies(m2_format, seed=2)
    engine = _NonCanonicalEngine(m2_tokenizer, replies, model_name=MODEL)
    live = live_gateway(engine=engine)
    s = live.open(family="tool-reasoning", seed=2, difficulty=1)
    client = live.client(s)
    messages, tools = list(s["messages"]), s["tools"]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    messages.append(_assistant(r.choices[0].message))
    for call in r.choices[0].message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "3"})
    client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    traj = live.gateway.sessions[s["session_id"]].trajectory
    first, second = traj.calls
    assert first.completion_ids != m2_tokenizer.encode(replies[0], add_special_tokens=False)  # really non-canonical
    assert second.prompt_ids[: len(first.prompt_ids) + len(first.completion_ids)] == first.prompt_ids + first.completion_ids
    full = _full_render_ids(m2_tokenizer, m2_format, messages, tools)
    assert second.prompt_ids != full  # a re-render would have re-tokenized the sample ...
    assert m2_tokenizer.decode(second.prompt_ids) == m2_tokenizer.decode(full)  # ... into the same text
    assert traj.metadata["gateway"]["calls"][1] == {"call": 1, "branch": 0, "parent": 0, "reason": "extends",
                                                     "retokenized": True, "restored_reasoning": 0,
                                                     "echo_spliced": 0}


def test_streaming_with_tool_calls_passes_through_and_is_recorded(live_gateway, m2_format, m2_tokenizer):
    replies = gold_replies(m2_format, seed=7)
    live = live_gateway(replies=replies)
    s = live.open(family="tool-reasoning", seed=7, difficulty=1)
    client = live.client(s)
    stream = client.chat.completions.create(model=MODEL, messages=s["messages"], tools=s["tools"], stream=True,
                                            stream_options={"include_usage": True})
    reasoning, calls, finish, usage = "", {}, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            for tc in choice.delta.tool_calls or []:
                calls.setdefault(tc.index, {"name": tc.function.name, "arguments": ""})
                calls[tc.index]["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls" and calls and reasoning
    assert all(json.loads(c["arguments"]) is not None for c in calls.values())
    traj = live.gateway.sessions[s["session_id"]].trajectory
    assert len(traj.calls) == 1
    assert traj.calls[0].completion_ids == m2_tokenizer.encode(replies[0], add_special_tokens=False)
    assert usage.completion_tokens == len(traj.calls[0].completion_ids)
    assert traj.messages[-1].tool_calls and traj.messages[-1].reasoning == reasoning


def test_reasoning_a_client_drops_is_given_back(live_gateway, m2_format):
    """Clients that keep only `content` (litellm-based agents) still extend one branch: the gateway
    restores the reasoning of replies it produced. With restoration off, the chain breaks."""
    for restore in (True, False):
        live = live_gateway(replies=[_body(m2_format, f"secret plan {i}", f"step {i}") for i in range(3)],
                            restore_reasoning=restore)
        s = live.open()
        client = live.client(s)
        messages = [{"role": "user", "content": "go"}]
        for i in range(3):
            content = client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
            messages += [{"role": "assistant", "content": content},  # reasoning dropped
                         {"role": "tool", "tool_call_id": f"t{i}", "content": "result"}]
        traj = live.gateway.sessions[s["session_id"]].trajectory
        notes = traj.metadata["gateway"]["calls"]
        if restore:
            assert traj.metadata["new_roots"] == [0] and [n["restored_reasoning"] for n in notes] == [0, 1, 2]
            assert "secret plan 0" in live.gateway.engine.tokenizer.decode(traj.calls[2].prompt_ids)
        else:
            assert traj.metadata["new_roots"] == [0, 1, 2]
