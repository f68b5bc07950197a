"""Every client mistake is an OpenAI-style 4xx, an engine failure a 500, and the server keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from forgerl.engine.base import GenerationResult, TokenEvent
from forgerl.errors import EngineError

MODEL = "forgerl-test"
OK_REPLY = "Fine.\n</think>\n\nAll good.[e~["
USER = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def _post(live, body: Any, *, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{live.base_url}/v1/chat/completions", content=content,
                      headers={"Content-Type": "application/json"}, timeout=30)


def _assert_still_serving(live) -> None:
    live.script([OK_REPLY])
    r = _post(live, {"model": MODEL, "messages": USER})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "All good."


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str | None]] = [
    # (id, body, a phrase the message must contain, the param it must name)
    ("missing-messages", {"model": MODEL}, "messages", "messages"),
    ("empty-messages", {"model": MODEL, "messages": []}, "messages", "messages"),
    ("bad-role", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role",
     "messages[0].role"),
    ("content-type", {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "valid string; or",
     "messages[0].content"),
    ("tool-choice-bogus", {"model": MODEL, "messages": USER, "tool_choice": "sometimes"}, "'auto'", "tool_choice"),
    ("temperature-type", {"model": MODEL, "messages": USER, "temperature": "hot"}, "temperature", "temperature"),
    ("n-2", {"model": MODEL, "messages": USER, "n": 2}, "n=1", "n"),
    ("max-tokens-0", {"model": MODEL, "messages": USER, "max_tokens": 0}, "at least 1", "max_tokens"),
    ("max-tokens-negative", {"model": MODEL, "messages": USER, "max_completion_tokens": -5}, "at least 1",
     "max_completion_tokens"),
    ("negative-temperature", {"model": MODEL, "messages": USER, "temperature": -1}, "temperature", "temperature"),
    ("top-p-zero", {"model": MODEL, "messages": USER, "top_p": 0}, "top_p", "top_p"),
    ("tool-bad-type", {"model": MODEL, "messages": USER, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                       "properties": {"a": {"type": "strng"}}}}}]},
     "strng", "tools[0].function.parameters.properties.a.type"),
    ("tool-not-object", {"model": MODEL, "messages": USER, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}, "object",
     "tools[0].function.parameters"),
    ("tool-bad-name", {"model": MODEL, "messages": USER, "tools": [
        {"type": "function", "function": {"name": "has space"}}]}, "invalid tool name", "tools[0].function.name"),
    ("tool-duplicate", {"model": MODEL, "messages": USER, "tools": [TOOL, TOOL]}, "duplicate", "tools[1].function.name"),
    ("tool-not-function", {"model": MODEL, "messages": USER, "tools": [{"type": "retrieval"}]}, "tools[0].type",
     "tools[0].type"),
    ("tool-choice-required", {"model": MODEL, "messages": USER, "tools": [TOOL], "tool_choice": "required"},
     "cannot be enforced", "tool_choice"),
    ("tool-choice-named", {"model": MODEL, "messages": USER, "tools": [TOOL],
                           "tool_choice": {"type": "function", "function": {"name": "f"}}}, "cannot be enforced",
     "tool_choice"),
    ("bad-arguments-json", {"model": MODEL, "messages": [
        *USER, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                     "function": {"name": "f", "arguments": "{not json"}}]}]},
     "not valid JSON", "messages[1].tool_calls[0].function.arguments"),
    ("image-part", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "not supported", "messages[0].content[0]"),
    ("penalty", {"model": MODEL, "messages": USER, "presence_penalty": 0.5}, "not supported", "presence_penalty"),
]


@pytest.mark.parametrize(("body", "phrase", "param"), [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_is_400_naming_the_field(live, body, phrase, param):
    engine = live.script([OK_REPLY])
    err = _error(_post(live, body), 400)
    assert phrase in err["message"]
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"
    assert engine.prompts == []  # rejected before the engine saw anything
    _assert_still_serving(live)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2]"], ids=["broken", "empty", "binary", "array"])
def test_malformed_body_is_400(live, raw):
    err = _error(_post(live, None, raw=raw), 400)
    assert "JSON" in err["message"]
    _assert_still_serving(live)


def test_unknown_model_is_404_and_names_the_served_one(live):
    err = _error(_post(live, {"model": "gpt-9", "messages": USER}), 404)
    assert "gpt-9" in err["message"] and MODEL in err["message"]
    assert err["code"] == "model_not_found"
    # The official client raises its typed error for it.
    with pytest.raises(openai.NotFoundError):
        live.client().chat.completions.create(model="gpt-9", messages=USER)
    _assert_still_serving(live)


def test_prompt_over_context_is_400_with_both_numbers(live):
    engine = live.script([OK_REPLY], max_context=40)
    err = _error(_post(live, {"model": MODEL, "messages": [{"role": "user", "content": "word " * 50}]}), 400)
    assert err["code"] == "context_length_exceeded"
    assert "40" in err["message"] and "prompt has" in err["message"]
    assert engine.prompts == []
    _assert_still_serving(live)


def test_engine_error_is_500_then_server_recovers(live):
    live.script([])  # the scripted engine raises EngineError: out of replies
    err = _error(_post(live, {"model": MODEL, "messages": USER}), 500)
    assert "ran out of replies" in err["message"] and err["type"] == "server_error"
    live.script([])
    err = _error(_post(live, {"model": MODEL, "messages": USER, "stream": True}), 500)
    assert "ran out of replies" in err["message"]
    with pytest.raises(openai.InternalServerError):
        live.script([])
        live.client().chat.completions.create(model=MODEL, messages=USER)
    _assert_still_serving(live)


class _FailsMidStream:
    """Streams two tokens, then breaks: the stream must end with an error event and [DONE]."""

    def __init__(self, inner):
        self.inner = inner

    async def stream(self, prompt_ids, params, session_id=None):
        ids = self.inner.tokenizer.encode("partial", add_special_tokens=False)
        for t in ids[:2]:
            yield TokenEvent(t, -1.0)
        raise EngineError("device fell over")

    async def generate(self, prompt_ids, params, session_id=None) -> GenerationResult:
        raise EngineError("device fell over")


def test_engine_error_mid_stream_ends_stream_with_error_event(live):
    live.script([OK_REPLY])
    saved = live.engine.inner
    live.engine.stream = _FailsMidStream(saved).stream  # type: ignore[method-assign]
    try:
        r = _post(live, {"model": MODEL, "messages": USER, "stream": True})
    finally:
        del live.engine.stream
    assert r.status_code == 200
    events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "device fell over" in json.loads(events[-2])["error"]["message"]
    _assert_still_serving(live)


def test_unknown_route_is_openai_style_404(live):
    r = httpx.get(f"{live.base_url}/v1/nope", timeout=10)
    err = _error(r, 404)
    assert "/v1/nope" in err["message"]
