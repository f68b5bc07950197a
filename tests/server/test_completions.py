"""`POST /v1/completions` with token-id prompts (server/completions.py): the request the
RemoteEngine/VLLMEngine client sends, answered in vLLM's shape and stamped with the policy version.

Shapes, errors and streaming run over the scripted engine (the module's `live` server); the logprob
convention runs over a real micro M2 model in the built-in engine, against a full-sequence forward
pass computed here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import torch

from forgerl.engine.base import GenerationResult, SamplingParams, TokenEvent
from forgerl.engine.remote import completion_body
from forgerl.server.admin import VERSION_HEADER

from .conftest import MODEL


def post(live, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{live.base_url}/v1/completions", json=body, timeout=30)


def sse_chunks(resp: httpx.Response) -> list[Any]:
    out = []
    for block in resp.text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_token_ids_in_token_ids_and_logprobs_out(live, m2_tokenizer):
    engine = live.script(["Hello there"])
    prompt = m2_tokenizer.encode("Say hi.", add_special_tokens=False)
    resp = post(live, {"model": MODEL, "prompt": prompt, "max_tokens": 50, "logprobs": 0, "return_token_ids": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    choice = body["choices"][0]
    expected = m2_tokenizer.encode("Hello there", add_special_tokens=False)
    assert engine.prompts[-1] == prompt  # the ids as sent: no text round trip
    assert choice["token_ids"] == expected and choice["prompt_token_ids"] == prompt
    assert choice["logprobs"]["token_logprobs"] == [-0.5] * len(expected)
    assert len(choice["logprobs"]["tokens"]) == len(expected) == len(choice["logprobs"]["text_offset"])
    assert choice["text"] == "Hello there" and choice["finish_reason"] == "stop"
    assert body["object"] == "text_completion" and body["model"] == MODEL
    assert body["usage"]["prompt_tokens"] == len(prompt) and body["usage"]["completion_tokens"] == len(expected)
    assert body["forgerl"]["policy_version"] == 0 and resp.headers[VERSION_HEADER] == "0"
    # without the extensions asked for, the plain OpenAI shape
    live.script(["Hello there"])
    plain = post(live, {"prompt": prompt, "max_tokens": 50}).json()["choices"][0]
    assert "token_ids" not in plain and plain["logprobs"] is None


def test_every_sampling_field_reaches_the_engine(live, m2_tokenizer):
    live.script(["ok"])
    prompt = [5, 6, 7]
    params = SamplingParams(max_tokens=9, temperature=0.7, top_p=0.9, top_k=40, stop=["END"], stop_token_ids=[3], seed=11)
    resp = post(live, completion_body(MODEL, prompt, params, frozenset({4})))  # exactly what the client sends
    assert resp.status_code == 200, resp.text
    got = live.engine.params[-1]
    assert (got.max_tokens, got.temperature, got.top_p, got.top_k, got.seed) == (9, 0.7, 0.9, 40, 11)
    assert got.stop == ["END"] and sorted(got.stop_token_ids) == [3, 4]
    live.script(["ok"])
    post(live, {"prompt": prompt})
    default = live.engine.params[-1]
    assert default.max_tokens == live.engine.max_context - len(prompt)  # the rest of the context, as vLLM
    assert (default.temperature, default.top_p, default.top_k, default.seed) == (1.0, 1.0, 0, None)


def test_policy_version_is_the_engines(live):
    engine = live.script(["a", "b"])
    engine.policy_version = 7
    resp = post(live, {"prompt": [1, 2], "max_tokens": 4})
    assert resp.json()["forgerl"]["policy_version"] == 7 and resp.headers[VERSION_HEADER] == "7"
    streamed = httpx.post(f"{live.base_url}/v1/completions", json={"prompt": [1, 2], "stream": True}, timeout=30)
    assert streamed.headers[VERSION_HEADER] == "7"
    assert sse_chunks(streamed)[-2]["forgerl"]["policy_version"] == 7


@pytest.mark.parametrize("body, status, param, match", [
    ({"prompt": [[1, 2], [3]]}, 400, "prompt", "one prompt per request"),
    ({"prompt": [1, "x"]}, 400, "prompt", "list of token ids"),
    ({"prompt": []}, 400, "prompt", "empty"),
    ({"prompt": [1, -3]}, 400, "prompt", "token id -3 is outside"),
    ({"prompt": [10**7]}, 400, "prompt", "outside the tokenizer's vocabulary"),
    ({"max_tokens": 5}, 400, "prompt", "missing field 'prompt'"),
    ({"prompt": [1], "logprobs": 5}, 400, "logprobs", "use 0"),
    ({"prompt": [1], "n": 2}, 400, "n", "only n=1"),
    ({"prompt": [1], "best_of": 3}, 400, "best_of", "only best_of=1"),
    ({"prompt": [1], "presence_penalty": 0.5}, 400, "presence_penalty", "neutral"),
    ({"prompt": [1], "repetition_penalty": 1.2}, 400, "repetition_penalty", "neutral"),
    ({"prompt": [1], "min_p": 0.1}, 400, "min_p", "neutral"),
    ({"prompt": [1], "ignore_eos": True}, 400, "ignore_eos", "always stops"),
    ({"prompt": [1], "echo": True}, 400, "echo", "not supported"),
    ({"prompt": [1], "max_tokens": 0}, 400, "max_tokens", "at least 1"),
    ({"prompt": [1], "temperature": -1}, 400, "temperature", "temperature"),
    ({"prompt": [1], "stop": [""]}, 400, "stop", "must not be empty"),
    ({"prompt": [1], "max_tokens": "many"}, 400, "max_tokens", "invalid field"),
    ({"prompt": [1], "model": "gpt-9"}, 404, "model", "does not exist"),
])
def test_bad_requests_get_a_clear_4xx(live, body, status, param, match):
    live.script(["unused"])
    resp = post(live, body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and match in err["message"]


def test_too_long_and_malformed_bodies(live):
    live.script(["unused"])
    resp = post(live, {"prompt": [1] * live.engine.max_context})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
    for raw in (b"{not json", b"[1, 2]"):
        bad = httpx.post(f"{live.base_url}/v1/completions", content=raw, timeout=30,
                         headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
    live.script([])  # the engine fails: a 500 that says so, and the server keeps serving
    assert post(live, {"prompt": [1]}).status_code == 500
    live.script(["fine"])
    assert post(live, {"prompt": [1]}).status_code == 200


def test_a_string_prompt_is_tokenized(live, m2_tokenizer):
    engine = live.script(["x"])
    assert post(live, {"prompt": "Hello world"}).status_code == 200
    assert engine.prompts[-1] == m2_tokenizer.encode("Hello world", add_special_tokens=False)


def test_streaming_gives_the_same_ids_logprobs_and_text(live, m2_tokenizer):
    reply = "The answer is 42, certainly."
    live.script([reply])
    whole = post(live, {"prompt": [1, 2, 3], "logprobs": 0, "return_token_ids": True}).json()["choices"][0]
    live.script([reply])
    resp = httpx.post(f"{live.base_url}/v1/completions", timeout=30, json={
        "prompt": [1, 2, 3], "logprobs": 0, "return_token_ids": True, "stream": True,
        "stream_options": {"include_usage": True}})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(resp)
    assert chunks[-1] == "[DONE]"
    usage, body = chunks[-2], [c for c in chunks[:-2]]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(whole["token_ids"])
    ids = [t for c in body for t in c["choices"][0]["token_ids"]]
    lps = [lp for c in body for lp in c["choices"][0]["logprobs"]["token_logprobs"]]
    assert ids == whole["token_ids"] and lps == whole["logprobs"]["token_logprobs"]
    assert "".join(c["choices"][0]["text"] for c in body) == whole["text"] == reply
    assert [c["choices"][0]["finish_reason"] for c in body] == [None] * (len(body) - 1) + ["stop"]
    assert len(body) == len(ids) + 1  # one chunk per token, then the finish


class _StopStringEngine:
    """Replies with fixed text that ends in the stop string 'END' (as an engine that honoured it)."""

    def __init__(self, tokenizer: Any, text: str) -> None:
        self.tokenizer, self.model_name, self.max_context, self.policy_version = tokenizer, MODEL, 512, 0
        self.ids = tokenizer.encode(text, add_special_tokens=False)

    async def generate(self, prompt_ids, params, session_id=None) -> GenerationResult:
        return [e async for e in self.stream(prompt_ids, params)][-1]

    async def stream(self, prompt_ids, params, session_id=None) -> AsyncIterator[Any]:
        for t in self.ids:
            yield TokenEvent(t, -1.0)
        yield GenerationResult(self.ids, [-1.0] * len(self.ids), "stop", 0, len(prompt_ids), stop_reason="END")

    def update_weights(self, state_dict, version) -> None: ...

    async def aclose(self) -> None: ...


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_left_out_of_the_text_unless_asked(live, m2_tokenizer, stream):
    inner = live.engine.inner
    live.engine.inner = _StopStringEngine(m2_tokenizer, "alpha beta END")
    try:
        for include, text in ((False, "alpha beta "), (True, "alpha beta END")):
            resp = httpx.post(f"{live.base_url}/v1/completions", timeout=30, json={
                "prompt": [1], "stop": ["END"], "include_stop_str_in_output": include, "stream": stream,
                "return_token_ids": True})
            if stream:
                body = [c for c in sse_chunks(resp) if c != "[DONE]"]
                got = "".join(c["choices"][0]["text"] for c in body)
                assert body[-1]["choices"][0]["stop_reason"] == "END"
            else:
                got = resp.json()["choices"][0]["text"]
                assert resp.json()["choices"][0]["stop_reason"] == "END"
            assert got == text  # streaming held back 'E', 'EN' until it knew
    finally:
        live.engine.inner = inner


# ------------------------------------------------------------------ a real model behind the route
@pytest.fixture(scope="module")
def micro_server(m2_tokenizer, m2_format):
    from forgerl.engine.llm import LLMEngine
    from forgerl.server.app import create_app
    from forgerl.testing import build_micro_moe

    from .conftest import LiveServer

    model = build_micro_moe(vocab_size=len(m2_tokenizer))
    engine = LLMEngine(model, m2_tokenizer, model_name="micro", max_context=256, num_slots=4)
    server = LiveServer(create_app(engine, m2_format), engine)  # type: ignore[arg-type]
    server.start()
    try:
        yield server, model
    finally:
        server.stop()


def _reference_logprobs(model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Raw log-softmax of one full-sequence forward pass (no cache, no temperature), fp32."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


def test_logprobs_are_the_raw_models_and_seeds_replay(micro_server):
    live, model = micro_server
    prompt = [11, 12, 13, 14, 15]
    body = {"model": "micro", "prompt": prompt, "max_tokens": 12, "temperature": 0.7, "top_k": 20, "seed": 5,
            "logprobs": 0, "return_token_ids": True}
    first = post(live, body).json()["choices"][0]
    again = post(live, body).json()["choices"][0]
    assert first["token_ids"] == again["token_ids"]  # a seed replays the same sample
    ref = _reference_logprobs(model, prompt, first["token_ids"])
    # Tolerance 1e-4: the engine decodes with a KV cache, the reference in one pass (fp32 both).
    # The logprobs are the raw model's, NOT temperature-scaled: 0.7 would move them by far more.
    assert torch.allclose(torch.tensor(first["logprobs"]["token_logprobs"]), ref, atol=1e-4)


def test_greedy_ids_follow_the_reference_argmax(micro_server):
    live, model = micro_server
    prompt = [21, 22, 23]
    choice = post(live, {"model": "micro", "prompt": prompt, "max_tokens": 8, "temperature": 0,
                         "logprobs": 0, "return_token_ids": True}).json()["choices"][0]
    ids = choice["token_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1]
    assert ids == logits.argmax(-1).tolist()
