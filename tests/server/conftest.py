"""Fixtures for the server tests: a real uvicorn server on 127.0.0.1 over a swappable engine.

One server per module (starting uvicorn costs ~0.2 s); each test installs the scripted engine it
needs with `live.script([...])`, so the server process state is shared but the replies are not.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import uvicorn

from forgerl.chat import get_format
from forgerl.engine.base import SamplingParams
from forgerl.engine.scripted import ScriptedEngine
from forgerl.errors import ConfigError
from forgerl.server.app import create_app

MODEL = "forgerl-test"


@pytest.fixture(scope="session")
def m2_format():
    return get_format("minimax_m2")


@pytest.fixture(scope="session")
def m2_tokenizer(m2_format):
    """The project's default tokenizer prepared for M2 (trained on the fly if the asset is absent)."""
    from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer, train_default_tokenizer

    try:
        tok = copy.deepcopy(load_default_tokenizer())
    except ConfigError:
        tok = train_default_tokenizer()
    return prepare_tokenizer(tok, m2_format)


class SwappableEngine:
    """An Engine that forwards to whichever ScriptedEngine the current test installed, and records
    the SamplingParams of every call (the scripted engine does not keep them)."""

    def __init__(self, tokenizer: Any) -> None:
        self.inner = ScriptedEngine(tokenizer, [], model_name=MODEL)
        self.params: list[SamplingParams] = []

    def __getattr__(self, name: str) -> Any:  # model_name, tokenizer, max_context, policy_version, prompts
        return getattr(self.inner, name)

    async def generate(self, prompt_ids, params, session_id=None):
        self.params.append(params)
        return await self.inner.generate(prompt_ids, params, session_id)

    def stream(self, prompt_ids, params, session_id=None):
        self.params.append(params)
        return self.inner.stream(prompt_ids, params, session_id)

    def update_weights(self, state_dict, version):
        self.inner.update_weights(state_dict, version)

    async def aclose(self):
        await self.inner.aclose()


class LiveServer:
    def __init__(self, app: Any, engine: SwappableEngine) -> None:
        self.app = app
        self.engine = engine
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def script(self, replies: list[Any], **kwargs: Any) -> ScriptedEngine:
        """Install a fresh ScriptedEngine with these replies; returns it for assertions."""
        kwargs.setdefault("model_name", MODEL)
        self.engine.inner = ScriptedEngine(self.engine.tokenizer, replies, **kwargs)
        self.engine.params.clear()
        return self.engine.inner

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def live(m2_tokenizer, m2_format) -> Iterator[LiveServer]:
    engine = SwappableEngine(m2_tokenizer)
    server = LiveServer(create_app(engine, m2_format), engine)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def client(live) -> openai.OpenAI:
    return live.client()


@pytest.fixture()
def serve_app() -> Iterator[Any]:
    """Start any app on a real loopback port: `live = serve_app(app)`; stopped after the test."""
    started: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app, engine=None)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
