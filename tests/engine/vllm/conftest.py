"""A fake vLLM server behind httpx.MockTransport: the endpoints the adapter and pusher use, with
the response shapes of vLLM 0.32 (checked against the real server by the slow tests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx


class FakeVLLM:
    """Completions: token i of the reply is (last prompt id + 1 + i) % vocab, logprob -0.25*(i+1);
    a stop token id in the request ends it (included in the ids, as vLLM does). The weights are the
    checksum of the last loaded safetensors file; `reload_has_no_effect` simulates a broken reload."""

    def __init__(self, vocab: int = 1000, reply_len: int = 5) -> None:
        self.vocab, self.reply_len = vocab, reply_len
        self.version: str | None = None
        self.weights = "initial"
        self.paused = False
        self.calls: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.fail_next: list[Any] = []  # exceptions to raise / status codes to answer, one per request
        self.reload_has_no_effect = False
        self.cached_tokens = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        if self.fail_next and path == "/v1/completions":
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure, json={"error": {"message": "simulated failure"}})
        body = json.loads(request.content) if request.content else {}
        if path == "/v1/completions":
            self.bodies.append(body)
            if self.paused:
                return httpx.Response(503, json={"error": {"message": "paused"}})
            return self._complete(body)
        if path == "/health":
            return httpx.Response(200)
        if path == "/pause":
            self.paused = True
            return httpx.Response(200, json={"status": "paused"})
        if path == "/resume":
            self.paused = False
            return httpx.Response(200, json={"status": "resumed"})
        if path == "/collective_rpc":
            assert body["method"] == "reload_weights"
            file = Path(body["kwargs"]["weights_path"]) / "model.safetensors"
            if not self.reload_has_no_effect:
                self.weights = hashlib.sha256(file.read_bytes()).hexdigest()
            return httpx.Response(200, json={"results": [None]})
        if path == "/reset_prefix_cache":
            return httpx.Response(200)
        if path == "/update_weight_version":
            self.version = body["new_version"]
            return httpx.Response(200, json={"weight_version": self.version})
        if path == "/weight_info":
            return httpx.Response(200, json={"weight_version": self.version})
        if path == "/weight_checker":
            return httpx.Response(200, json={"checksums": {"model.w": self.weights}})
        return httpx.Response(404, json={"detail": "Not Found"})

    def _reply(self, body: dict[str, Any]) -> tuple[list[int], str, Any]:
        prompt = body["prompt"]
        if len(prompt) + body["max_tokens"] > 64:
            raise _TooLong()
        ids: list[int] = []
        stops = set(body.get("stop_token_ids") or [])
        for i in range(min(self.reply_len, body["max_tokens"])):
            tok = (prompt[-1] + 1 + i) % self.vocab
            ids.append(tok)
            if tok in stops:
                return ids, "stop", tok
        finish = "length" if body["max_tokens"] <= self.reply_len else "stop"
        return ids, finish, None

    def _complete(self, body: dict[str, Any]) -> httpx.Response:
        try:
            ids, finish, stop_reason = self._reply(body)
        except _TooLong:
            return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 64 tokens"}})
        lps = [-0.25 * (i + 1) for i in range(len(ids))]
        usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": len(ids),
                 "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
        if not body.get("stream"):
            choice = {"index": 0, "text": "x" * len(ids), "token_ids": ids, "finish_reason": finish,
                      "stop_reason": stop_reason, "logprobs": {"token_logprobs": lps, "tokens": [f"t{t}" for t in ids],
                                                               "top_logprobs": [{} for _ in ids], "text_offset": list(range(len(ids)))}}
            return httpx.Response(200, json={"id": "cmpl-1", "object": "text_completion", "choices": [choice], "usage": usage})
        lines = []
        for i, (tok, lp) in enumerate(zip(ids, lps, strict=True)):
            last = i == len(ids) - 1
            choice = {"index": 0, "text": "x", "token_ids": [tok], "logprobs": {"token_logprobs": [lp], "tokens": [f"t{tok}"]},
                      "finish_reason": finish if last else None, "stop_reason": stop_reason if last else None}
            lines.append("data: " + json.dumps({"choices": [choice]}))
        lines.append("data: " + json.dumps({"choices": [], "usage": usage}))
        lines.append("data: [DONE]")
        return httpx.Response(200, content=("\n\n".join(lines) + "\n\n").encode(),
                              headers={"content-type": "text/event-stream"})


class _TooLong(Exception):
    pass


class FakeSupervisor:
    """What the adapter needs of server.VLLMServer for retries."""

    def __init__(self, ok: bool = True, on_restart=None) -> None:
        self.ok, self.calls, self.last_error = ok, 0, "simulated: cannot restart"
        self.up, self.on_restart = True, on_restart

    def healthy(self) -> bool:
        return self.up

    def ensure_running(self) -> bool:
        self.calls += 1
        if self.ok and self.on_restart is not None:
            self.on_restart()
        self.up = self.ok
        return self.ok

    def stop(self) -> None:
        pass


# ---------------------------------------------------------------------------------------- fixtures
import pytest  # noqa: E402 (the helpers above are imported by scripts without pytest)


@pytest.fixture()
def fake_vllm() -> FakeVLLM:
    return FakeVLLM()


@pytest.fixture()
def fake_supervisor_cls() -> type[FakeSupervisor]:
    return FakeSupervisor
