"""The gateway's HTTP API has the same request limits as `forgerl serve` (issue 26 item 10):
bodies capped before they are read whole, hostile values a 4xx naming the field (and never
recorded or stored), a long history prepared off the event loop."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from forgerl.chat import get_format
from forgerl.engine.scripted import ScriptedEngine
from forgerl.gateway.core import Gateway
from forgerl.gateway.serve import BackgroundGateway
from forgerl.server.limits import DEFAULT_MAX_BODY_BYTES
from forgerl.types import Message

from .conftest import MODEL, Live

M2 = get_format("minimax_m2")
REPLY = M2.render_assistant_body(Message(role="assistant", content="ok", reasoning="fine"))
USER = [{"role": "user", "content": "hi"}]


def _chat(live, s, body: bytes) -> httpx.Response:
    return live.bare.post(f"/sessions/{s['session_id']}/v1/chat/completions", content=body,
                          headers={"Authorization": f"Bearer {s['api_key']}", "Content-Type": "application/json"})


def test_a_declared_oversize_body_is_refused_before_it_is_read(live_gateway):
    live = live_gateway(replies=[REPLY])
    s = live.open()
    head = (f"POST /sessions/{s['session_id']}/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {s['api_key']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {200 * 1024 * 1024}\r\n\r\n{{").encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", live.bg.port), timeout=10) as sock:
        sock.sendall(head)
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert str(DEFAULT_MAX_BODY_BYTES).encode() in answer


def test_a_chunked_body_is_cut_off_at_the_cap(m2_tokenizer, m2_format):
    gateway = Gateway(ScriptedEngine(m2_tokenizer, [REPLY], model_name=MODEL), m2_format)
    bg = BackgroundGateway(gateway, max_body_bytes=32 * 1024).start()
    live = Live(bg)
    try:
        s = live.open()

        def body(chunks: int = 6):  # 48 KiB, chunked: over the cap, and read to its end before the 413
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(chunks):
                yield b"a" * (8 * 1024)
            yield b'"}]}'

        r = live.bare.post(f"/sessions/{s['session_id']}/v1/chat/completions", content=body(),
                           headers={"Authorization": f"Bearer {s['api_key']}", "Content-Type": "application/json"})
        assert r.status_code == 413 and "32768 bytes" in r.json()["error"]["message"], r.text
        r = live.http.post("/sessions", content=body(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413  # the admin API too
        assert not gateway.sessions[s["session_id"]].trajectory.calls
        try:  # 100x the cap: the server closes the connection (the client may see a reset, not the 413)
            r = live.bare.post(f"/sessions/{s['session_id']}/v1/chat/completions", content=body(400),
                               headers={"Authorization": f"Bearer {s['api_key']}"})
            assert r.status_code == 413
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            pass
        assert live.bare.get("/health").status_code == 200 and not gateway.sessions[s["session_id"]].trajectory.calls
    finally:
        live.http.close()
        live.bare.close()
        bg.stop()


HOSTILE = [
    ("temperature-nan", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
    ("seed-2-80", b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1208925819614629174706176}', "seed"),
    ("lone-surrogate", b'{"messages": [{"role": "user", "content": "\\ud83d"}]}', "messages[0].content"),
    ("nested-100k", b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
]


@pytest.mark.parametrize("body, param", [(b, p) for _, b, p in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_chat_values_get_a_4xx_naming_the_field_and_are_not_recorded(live_gateway, body, param):
    live = live_gateway(replies=[REPLY])
    s = live.open()
    r = _chat(live, s, body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert not live.gateway.sessions[s["session_id"]].trajectory.calls
    ok = _chat(live, s, json.dumps({"model": MODEL, "messages": USER}).encode())
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("body, param", [
    (b'{"metadata": {"score": NaN}}', "metadata.score"),
    (b'{"metadata": {"note": "\\udc00"}}', "metadata.note"),
    (b'{"seed": 1208925819614629174706176}', "seed"),
], ids=["metadata-nan", "metadata-surrogate", "seed-2-80"])
def test_hostile_session_bodies_are_refused_before_anything_is_stored(live_gateway, body, param):
    """A NaN stored in a trajectory's metadata would make every later read of it a 500."""
    live = live_gateway(replies=[REPLY])
    r = live.http.post("/sessions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert not live.gateway.sessions


def test_health_answers_while_a_long_history_is_prepared(live_gateway):
    live = live_gateway(replies=[REPLY])
    s = live.open()
    words = "".join(f"word{i} alpha beta gamma. " for i in range(80_000))  # ~2 MB, ~1M tokens
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            while not stop.is_set():
                t0 = time.perf_counter()
                http.get("/health").raise_for_status()
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        t0 = time.perf_counter()
        r = live.bare.post(f"/sessions/{s['session_id']}/v1/chat/completions", timeout=300,
                           headers={"Authorization": f"Bearer {s['api_key']}"},
                           json={"model": MODEL, "messages": [{"role": "user", "content": words}]})
        busy = time.perf_counter() - t0
    finally:
        stop.set()
        prober.join()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
    assert len(latencies) >= 3, (busy, latencies)
    worst = max(latencies)
    assert worst < max(1.0, busy / 3), f"/health took {worst:.2f}s while a {busy:.2f}s request was prepared"
