"""Fixtures for the gateway tests: the M2 tokenizer, a scripted engine, a live gateway on loopback."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.gateway.core import Gateway
from forgerl.gateway.serve import BackgroundGateway

MODEL = "gw-test"


@pytest.fixture(scope="session")
def m2_format():
    return get_format("minimax_m2")


@pytest.fixture(scope="session")
def m2_tokenizer(m2_format):
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer

    return prepare_tokenizer(copy.deepcopy(load_default_tokenizer()), m2_format)


class Live:
    """A running gateway plus helpers to open sessions and make clients for them. `http` sends the
    gateway's admin key (what a rollout driver holds); `bare` sends no credential at all."""

    def __init__(self, bg: BackgroundGateway) -> None:
        self.bg, self.gateway, self.url = bg, bg.gateway, bg.url
        self.admin_headers = {"Authorization": f"Bearer {bg.gateway.admin_key}"} if bg.gateway.admin_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=30, headers=self.admin_headers)
        self.bare = httpx.Client(base_url=self.url, timeout=30)

    def open(self, **body: Any) -> dict[str, Any]:
        r = self.http.post("/sessions", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def client(self, session: dict[str, Any], **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=session["base_url"], api_key=session["api_key"], max_retries=0, timeout=30,
                             **kwargs)

    def end(self, session: dict[str, Any], **body: Any) -> dict[str, Any]:
        r = self.http.post(f"/sessions/{session['session_id']}/end", json=body,
                           headers={"Authorization": f"Bearer {session['api_key']}"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture()
def live_gateway(m2_tokenizer, m2_format) -> Iterator[Callable[..., Live]]:
    """`live = live_gateway(engine=..., **Gateway kwargs)`: a gateway on a loopback port, stopped after the test."""
    started: list[Live] = []

    def start(engine: Any = None, replies: list[Any] | None = None, **kwargs: Any) -> Live:
        engine = engine if engine is not None else ScriptedEngine(m2_tokenizer, replies or [], model_name=MODEL)
        live = Live(BackgroundGateway(Gateway(engine, m2_format, **kwargs)).start())
        started.append(live)
        return live

    yield start
    for live in started:
        live.http.close()
        live.bare.close()
        live.bg.stop()
