"""`forgerl serve` does not trust request size or values (issue 26 item 10): bodies are capped
before they are read whole (declared and chunked), hostile values are a 4xx naming the field, and
a long prompt is tokenized off the event loop so `/health` keeps answering."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from forgerl.engine.scripted import ScriptedEngine
from forgerl.server.app import create_app
from forgerl.server.limits import DEFAULT_MAX_BODY_BYTES

MODEL = "forgerl-test"
OK_REPLY = "Fine.\n</think>\n\nAll good.[e~["
USER = [{"role": "user", "content": "Hi"}]


def _raw_request(port: int, head: bytes, body: bytes = b"", timeout_s: float = 10) -> bytes:
    """Send `head` + `body` on a fresh socket and return what the server answers (it may close
    the connection without reading the rest of a body it refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head + body)
        out = b""
        try:
            while chunk := sock.recv(65536):  # until the server closes the connection
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def test_a_declared_oversize_body_is_refused_before_it_is_read(live):
    huge = 100 * 1024 * 1024
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {huge}\r\n\r\n").encode()
    t0 = time.monotonic()
    answer = _raw_request(live.port, head, b'{"messages": [')  # 100 MB promised, 14 bytes sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - t0 < 5  # answered at once, not after waiting for 100 MB
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert str(DEFAULT_MAX_BODY_BYTES) in body["error"]["message"] and body["error"]["code"] == "request_too_large"
    live.script([OK_REPLY])
    assert httpx.post(f"{live.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER}).status_code == 200


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_a_chunked_body_is_cut_off_at_the_cap(serve_app, m2_tokenizer, m2_format, route):
    engine = ScriptedEngine(m2_tokenizer, [OK_REPLY], model_name=MODEL)
    small = serve_app(create_app(engine, m2_format, max_body_bytes=64 * 1024))
    sent = {"bytes": 0}

    def body():  # no Content-Length: httpx sends it chunked, 16 KiB at a time, 1 MiB in all
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(64):
            sent["bytes"] += 16 * 1024
            yield b"a" * (16 * 1024)
        yield b'"}]}'

    r = httpx.post(f"{small.base_url}{route}", content=body(), headers={"Content-Type": "application/json"},
                   timeout=30)
    assert r.status_code == 413, r.text
    assert "65536 bytes" in r.json()["error"]["message"]
    ok = httpx.post(f"{small.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER}, timeout=30)
    assert ok.status_code == 200, ok.text


def test_the_cap_is_configurable_and_a_body_under_it_is_served(serve_app, m2_tokenizer, m2_format):
    engine = ScriptedEngine(m2_tokenizer, [OK_REPLY], model_name=MODEL)
    small = serve_app(create_app(engine, m2_format, max_body_bytes=2048))
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 4096}]}
    r = httpx.post(f"{small.base_url}/v1/chat/completions", json=big, timeout=30)
    assert r.status_code == 413 and "2048 bytes" in r.json()["error"]["message"]
    fine = httpx.post(f"{small.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER}, timeout=30)
    assert fine.status_code == 200


def _deep(levels: int) -> bytes:
    return b'{"model": "forgerl-test", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + \
        b"[" * levels + b"]" * levels + b"}"


# (id, raw body, the field the error must name (None: the body as a whole), words in the message)
HOSTILE: list[tuple[str, bytes, str | None, str]] = [
    ("temperature-nan", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature",
     "NaN"),
    ("temperature-infinity", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": Infinity}',
     "temperature", "Infinity"),
    ("top-p-minus-infinity", b'{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "top_p",
     "finite"),
    ("temperature-overflow", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
     "temperature", "finite"),
    ("seed-2-80", b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1208925819614629174706176}', "seed",
     "64-bit"),
    ("seed-negative-huge", b'{"messages": [{"role": "user", "content": "hi"}], "seed": -99999999999999999999}',
     "seed", "64-bit"),
    ("lone-surrogate-escape", b'{"messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
     "messages[0].content", "surrogate"),
    ("lone-surrogate-bytes", b'{"messages": [{"role": "user", "content": "hi \xed\xa0\x80"}]}',
     "messages[0].content", "surrogate"),
    ("surrogate-in-a-key", b'{"messages": [{"role": "user", "content": "hi", "\\udfff": 1}]}', "messages[0]",
     "surrogate"),
    ("nested-100k", _deep(100_000), None, "nested too deeply"),
    ("nested-200", _deep(200), "metadata", "nested more than"),
    ("giant-integer-literal", b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1' + b"0" * 5000 + b"}",
     None, "not valid JSON"),
    ("too-many-stops", json.dumps({"messages": USER, "stop": [f"s{i}" for i in range(1000)]}).encode(), "stop",
     "at most"),
]


@pytest.mark.parametrize("body, param, words", [(b, p, w) for _, b, p, w in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_values_get_a_4xx_naming_the_field(live, body, param, words):
    live.script([OK_REPLY])
    r = httpx.post(f"{live.base_url}/v1/chat/completions", content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err
    assert live.engine.params == []  # nothing reached the engine
    live.script([OK_REPLY])
    assert httpx.post(f"{live.base_url}/v1/chat/completions", json={"model": MODEL, "messages": USER}).status_code == 200


@pytest.mark.parametrize("body, param", [
    (b'{"prompt": [1, 2, 3], "temperature": NaN}', "temperature"),
    (b'{"prompt": [1, 2, 3], "seed": 1208925819614629174706176}', "seed"),
    (b'{"prompt": "caf\\udce9"}', "prompt"),
    (b'{"prompt": [1, 2, 3], "stop_token_ids": [99999999999999999999999]}', "stop_token_ids[0]"),
], ids=["nan", "seed", "surrogate", "huge-stop-id"])
def test_the_token_route_refuses_hostile_values_too(live, body, param):
    r = httpx.post(f"{live.base_url}/v1/completions", content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def _health_latencies(base_url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            http.get(f"{base_url}/health").raise_for_status()
            out.append(time.perf_counter() - t0)
            time.sleep(0.05)


def test_health_answers_while_a_long_prompt_is_tokenized(live):
    """A 2 MB prompt (allowed) takes seconds to tokenize on these CPUs; it must not hold the loop."""
    live.script([OK_REPLY])
    words = "".join(f"word{i} alpha beta gamma. " for i in range(80_000))  # ~2 MB, ~1M tokens
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=_health_latencies, args=(live.base_url, stop, latencies))
    prober.start()
    try:
        t0 = time.perf_counter()
        r = httpx.post(f"{live.base_url}/v1/chat/completions", timeout=300,
                       json={"model": MODEL, "messages": [{"role": "user", "content": words}]})
        busy = time.perf_counter() - t0
    finally:
        stop.set()
        prober.join()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
    assert len(latencies) >= 3, (busy, latencies)
    worst = max(latencies)
    assert worst < max(1.0, busy / 3), f"/health took {worst:.2f}s while a {busy:.2f}s request was prepared"

