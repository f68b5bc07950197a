"""`serve()` wiring plus one real request path through the built-in tiny engine (random weights:
the text is gibberish, so only shapes, ids, usage and status are checked)."""

from __future__ import annotations

from typing import Any

import openai
import uvicorn

from forgerl.server.app import serve


def test_serve_loads_the_builtin_engine_and_answers(monkeypatch, serve_app):
    captured: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:  # capture instead of blocking in uvicorn.run
        captured.update(app=app, **kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    serve(model="tiny-random", port=8123, chat_format="minimax_m2")
    assert captured["host"] == "127.0.0.1" and captured["port"] == 8123  # loopback by default

    live = serve_app(captured["app"])
    client = openai.OpenAI(base_url=f"{live.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["tiny-random"]

    resp = client.chat.completions.create(
        model="tiny-random", messages=[{"role": "user", "content": "What is 2+3?"}], max_tokens=8, seed=1,
        logprobs=True, extra_body={"return_token_ids": True},
    )
    choice = resp.choices[0]
    ext = resp.model_extra["forgerl"]
    ids = choice.model_extra["token_ids"]
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= len(ids) <= 8 and ids == ext["completion_ids"]
    assert len(ext["completion_logprobs"]) == len(ids) and all(lp <= 0 for lp in ext["completion_logprobs"])
    assert len(choice.logprobs.content) == len(ids)
    assert ext["policy_version"] == 0
    assert resp.usage.prompt_tokens == len(resp.model_extra["prompt_token_ids"]) == len(ext["prompt_ids"])
    assert resp.usage.completion_tokens == len(ids)
    assert isinstance(choice.message.content, str)

    chunks = list(client.chat.completions.create(
        model="tiny-random", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    ))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert 1 <= chunks[-1].usage.completion_tokens <= 6
