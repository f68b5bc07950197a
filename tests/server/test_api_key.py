"""`forgerl serve --api-key/--served-model-name` through the official `openai` client on a real
loopback server: /v1 needs the bearer key (401 in OpenAI's envelope otherwise), /health stays
open, the served name is the only model id a client sees. Plus the CLI wiring and its defaults."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from forgerl.engine.scripted import ScriptedEngine
from forgerl.server.app import create_app
from forgerl.server.auth import bearer_matches, exposure_warning, is_loopback

KEY = "sk-test-0123456789abcdef"
SERVED = "my-policy"
PRIVATE_PATH = "/secret/models/checkpoint-7"
REPLY = "Greeting.\n</think>\n\nHello![e~["


@pytest.fixture()
def keyed(serve_app, m2_tokenizer, m2_format) -> Any:
    engine = ScriptedEngine(m2_tokenizer, [REPLY] * 4, model_name=PRIVATE_PATH)
    return serve_app(create_app(engine, m2_format, served_model_name=SERVED, api_key=KEY))


def _client(live: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_the_right_key_is_served_under_the_served_name(keyed):
    client = _client(keyed, KEY)
    assert [m.id for m in client.models.list().data] == [SERVED]
    out = client.chat.completions.create(model=SERVED, messages=[{"role": "user", "content": "hi"}])
    assert out.model == SERVED and out.choices[0].message.content == "Hello!"
    with pytest.raises(openai.NotFoundError, match=SERVED):  # the private path is not a model id
        client.chat.completions.create(model=PRIVATE_PATH, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("route", ["models", "chat", "completions"])
def test_a_wrong_key_is_refused_with_an_openai_error(keyed, route):
    client = _client(keyed, KEY + "x")
    with pytest.raises(openai.AuthenticationError) as info:
        if route == "models":
            client.models.list()
        elif route == "chat":
            client.chat.completions.create(model=SERVED, messages=[{"role": "user", "content": "hi"}])
        else:
            client.completions.create(model=SERVED, prompt=[1, 2, 3])
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key" and "does not match" in info.value.body["message"]


def test_no_credential_is_refused_and_health_stays_open(keyed):
    r = httpx.get(f"{keyed.base_url}/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error" and "Authorization: Bearer" in r.json()["error"]["message"]
    health = httpx.get(f"{keyed.base_url}/health")
    assert health.status_code == 200 and health.json()["model"] == SERVED and PRIVATE_PATH not in health.text


def test_without_a_key_the_server_stays_open(serve_app, m2_tokenizer, m2_format):
    live = serve_app(create_app(ScriptedEngine(m2_tokenizer, [REPLY], model_name="m"), m2_format))
    assert [m.id for m in _client(live, "anything").models.list().data] == ["m"]


def test_bearer_comparison_and_exposure_warning():
    assert bearer_matches(f"Bearer {KEY}", KEY)
    assert not bearer_matches(KEY, KEY) and not bearer_matches(None, KEY) and not bearer_matches(f"Bearer {KEY} ", KEY)
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.org"))
    warning = exposure_warning("0.0.0.0", None)
    assert warning is not None and "--api-key" in warning and "127.0.0.1" in warning
    assert exposure_warning("0.0.0.0", KEY) is None and exposure_warning("127.0.0.1", None) is None


def _invoke_serve(monkeypatch, args: list[str], env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    from typer.testing import CliRunner

    import forgerl.server.app as server_app
    from forgerl.cli.main import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server_app, "serve", lambda **kwargs: seen.update(kwargs))
    monkeypatch.delenv("FORGERL_API_KEY", raising=False)
    return CliRunner().invoke(app, ["serve", *args], env=env), seen


def test_serve_cli_defaults_to_the_trained_policy_and_passes_the_options(monkeypatch):
    result, seen = _invoke_serve(monkeypatch, [])
    assert result.exit_code == 0, result.output
    assert seen["model"] == "default" and seen["api_key"] is None and seen["served_model_name"] is None
    result, seen = _invoke_serve(monkeypatch, ["--served-model-name", SERVED, "--api-key", KEY])
    assert result.exit_code == 0 and seen["served_model_name"] == SERVED and seen["api_key"] == KEY
    result, seen = _invoke_serve(monkeypatch, [], env={"FORGERL_API_KEY": KEY})
    assert result.exit_code == 0 and seen["api_key"] == KEY
    result, seen = _invoke_serve(monkeypatch, ["--api-key", " "])
    assert result.exit_code == 2 and "must not be empty" in result.output and not seen
