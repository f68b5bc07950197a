"""The gateway in front of a remote `forgerl serve` (its `return_token_ids` extension): the ids the
remote engine saw and sampled are recorded, extension fields stay hidden from the client, tool
calls and streaming pass through, and the upstream's own errors come back as they were."""

from __future__ import annotations

import json

import openai
import pytest

from forgerl.engine.scripted import ScriptedEngine
from forgerl.gateway.core import Gateway
from forgerl.gateway.remote import Upstream
from forgerl.gateway.serve import BackgroundGateway, ThreadedServer
from forgerl.server.app import create_app

from .conftest import MODEL, Live
from .helpers import gold_replies


@pytest.fixture()
def remote(m2_tokenizer, m2_format):
    """(start(replies) -> (Live gateway, upstream engine)); a forgerl server + a gateway over it."""
    servers = []

    def start(replies):
        engine = ScriptedEngine(m2_tokenizer, replies, model_name=MODEL)
        upstream_server = ThreadedServer(create_app(engine, m2_format)).start()
        gw = Gateway(Upstream(upstream_server.url).discover(), m2_format)
        live = Live(BackgroundGateway(gw).start())
        servers.extend([live.bg, upstream_server])
        return live, engine

    yield start
    for server in servers:
        server.stop()


def test_remote_records_the_upstream_ids_and_extends_one_branch(remote, m2_format, m2_tokenizer):
    replies = gold_replies(m2_format, seed=4)
    live, engine = remote(replies)
    assert live.gateway.model_name == MODEL and live.gateway.engine.max_context == engine.max_context
    s = live.open(family="tool-reasoning", seed=4, difficulty=1)
    client = live.client(s)
    messages, tools = list(s["messages"]), s["tools"]
    for i in range(len(replies)):
        stream = i % 2 == 1
        resp = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, stream=stream)
        if stream:
            reasoning, calls = "", {}
            for chunk in resp:
                assert "forgerl" not in (chunk.model_extra or {}) and "prompt_token_ids" not in (chunk.model_extra or {})
                for ch in chunk.choices:
                    reasoning += (ch.delta.model_extra or {}).get("reasoning_content") or ""
                    for tc in ch.delta.tool_calls or []:
                        calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                        calls[tc.index]["arguments"] += tc.function.arguments or ""
            tool_calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                          for c in calls.values()]
        else:
            assert "forgerl" not in resp.model_extra and "prompt_token_ids" not in resp.model_extra
            msg = resp.choices[0].message
            reasoning, tool_calls = msg.model_extra["reasoning_content"], [
                {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
                for c in msg.tool_calls]
        messages.append({"role": "assistant", "content": "", "reasoning_content": reasoning, "tool_calls": tool_calls})
        for c in tool_calls:
            out = live.http.post(f"{s['base_url']}/tools/call", headers={"Authorization": f"Bearer {s['api_key']}"},
                                 json={"name": c["function"]["name"], "arguments": c["function"]["arguments"]}).json()
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": out["content"]})
    ended = live.end(s)
    assert ended["reward"] == 1.0 and ended["branches"] == 1
    traj = live.gateway.finished[s["session_id"]]
    assert [c.prompt_ids for c in traj.calls] == engine.prompts
    assert [c.completion_ids for c in traj.calls] == [m2_tokenizer.encode(r, add_special_tokens=False) for r in replies]
    assert all(c.completion_logprobs == [-0.5] * len(c.completion_ids) for c in traj.calls)
    assert traj.metadata["new_roots"] == [0]


def test_remote_passes_upstream_errors_and_keeps_serving(remote, m2_format):
    live, _ = remote([m2_format.render_assistant_body(__import__("forgerl.types", fromlist=["Message"]).Message(
        role="assistant", content="hi", reasoning="r"))])
    s = live.open()
    client = live.client(s)
    with pytest.raises(openai.NotFoundError) as err:  # the upstream's 404, as it said it
        client.chat.completions.create(model="not-served", messages=[{"role": "user", "content": "x"}])
    assert "does not exist" in err.value.message
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       extra_body={"return_token_ids": True})
    assert r.choices[0].message.content == "hi" and r.model_extra["forgerl"]["completion_ids"]  # asked for: kept
    traj = live.gateway.sessions[s["session_id"]].trajectory
    assert len(traj.calls) == 1 and traj.calls[0].completion_ids == r.model_extra["forgerl"]["completion_ids"]
    assert json.loads(traj.model_dump_json())["messages"][-1]["content"] == "hi"
