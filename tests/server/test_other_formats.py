"""The server is format-agnostic: the same request path works for formats whose generation prompt
does not open the thinking block (Hermes, json_tools), streamed and not."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.model.tokenizer import prepare_tokenizer
from forgerl.server.app import create_app
from forgerl.types import Message, ToolCall

TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}


def _stream(client: TestClient, body: dict) -> dict:
    r = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200
    out = {"content": "", "reasoning": "", "tool_calls": [], "finish": None}
    for line in r.text.split("\n\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for choice in json.loads(line[6:])["choices"]:
            d = choice["delta"]
            out["content"] += d.get("content") or ""
            out["reasoning"] += d.get("reasoning_content") or ""
            out["tool_calls"] += d.get("tool_calls") or []
            out["finish"] = choice["finish_reason"] or out["finish"]
    return out


@pytest.mark.parametrize("fmt_name", ["hermes", "json_tools"])
@pytest.mark.parametrize("reasoning", [None, "Adding two numbers."])
def test_format_round_trip_streamed_and_not(m2_tokenizer, fmt_name, reasoning):
    fmt = get_format(fmt_name)
    tok = prepare_tokenizer(copy.deepcopy(m2_tokenizer), fmt)
    reply = fmt.render_assistant_body(Message(
        role="assistant", content="Let me add.", reasoning=reasoning,
        tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})]))
    engine = ScriptedEngine(tok, [reply, reply], model_name="m")
    client = TestClient(create_app(engine, fmt))
    body = {"model": "m", "messages": [{"role": "user", "content": "2+3?"}], "tools": [TOOL]}

    msg = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert msg["content"] == "Let me add."
    assert msg["reasoning_content"] == reasoning
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in msg["tool_calls"]] == [
        ("add", {"a": 2, "b": 3})]

    got = _stream(client, body)
    assert got["finish"] == "tool_calls"
    assert got["content"] == "Let me add."
    assert got["reasoning"] == (reasoning or "")
    assert json.loads(got["tool_calls"][0]["function"]["arguments"]) == {"a": 2, "b": 3}
