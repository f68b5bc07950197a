"""The gateway in front of a *remote* OpenAI-compatible server that returns token ids.

Used when the engine runs in another process or machine — `forgerl serve` (its `return_token_ids`
extension returns prompt ids, completion ids, logprobs and the policy version) or vLLM
(`return_token_ids` gives `prompt_token_ids` and `choices[].token_ids`; logprobs come from
`logprobs: true`; it reports no policy version, so calls are stamped with the version last set
with `Upstream.policy_version`). The gateway forwards the chat request, records the ids the
server reports, and strips the extension fields the client did not ask for.

What differs from the in-process engine: the remote server renders the prompt itself, so the
gateway cannot splice sampled ids into the next prompt. Reconciliation is by token prefix: a call
extends an earlier one when its prompt ids start with that call's prompt + completion ids (true
whenever the server's re-render reproduces the sampled tokens); otherwise a new branch starts and
is recorded as such. The recorded ids are always exactly what the remote engine saw and sampled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from forgerl.engine.base import GenerationResult
from forgerl.errors import ConfigError
from forgerl.gateway.core import Gateway, GatewayError
from forgerl.gateway.sessions import Session
from forgerl.server.convert import to_messages
from forgerl.server.protocol import ChatCompletionRequest
from forgerl.types import Message, ToolCall

log = logging.getLogger(__name__)

_EXTENSION_KEYS = ("prompt_token_ids", "forgerl")


class Upstream:
    """A remote OpenAI-compatible server, standing where the gateway's engine would be."""

    tokenizer = None

    def __init__(self, base_url: str, *, api_key: str | None = None, model_name: str | None = None,
                 max_context: int = 0, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.api_key = api_key
        self.model_name = model_name or ""
        self.max_context = max_context
        self.policy_version = 0  # the version stamped on calls whose server reports none
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    def discover(self) -> Upstream:
        """Fill in the served model name and context length from `GET /v1/models` (blocking; call
        at start-up). Raises ConfigError when the server cannot be reached."""
        try:
            r = httpx.get(f"{self.base_url}/models", timeout=30,
                          headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
            model = r.raise_for_status().json()["data"][0]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"cannot read the served model from {self.base_url}/models: {exc}; "
                              "is the server up?") from None
        self.model_name = self.model_name or model["id"]
        self.max_context = self.max_context or int(model.get("max_model_len") or 0)
        return self

    def client(self) -> httpx.AsyncClient:
        """One pooled client, made on first use (on the event loop that serves the gateway)."""
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout_s,
                                             limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass
class _Captured:
    """Token ids and the reply, gathered from a response body or from stream chunks."""

    prompt_ids: list[int] | None = None
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    version: int | None = None
    finish: str | None = None
    content: str = ""
    reasoning: str | None = None
    calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def take_extension(self, ext: dict[str, Any]) -> None:
        """forgerl's `forgerl` object is authoritative when present."""
        self.prompt_ids = list(ext["prompt_ids"])
        self.completion_ids = list(ext["completion_ids"])
        self.logprobs = [float(x) for x in ext["completion_logprobs"]]
        self.version = int(ext["policy_version"])

    def reply(self) -> Message:
        calls = []
        for _, c in sorted(self.calls.items()):
            try:
                args = json.loads(c["arguments"] or "{}")
            except json.JSONDecodeError:
                args = {"_raw": c["arguments"]}
            calls.append(ToolCall(**({"id": c["id"]} if c.get("id") else {}), name=c["name"],
                                  arguments=args if isinstance(args, dict) else {"_raw": args}))
        return Message(role="assistant", content=self.content, reasoning=self.reasoning, tool_calls=calls)


async def forward_chat(gw: Gateway, upstream: Upstream, session: Session, payload: dict[str, Any],
                       req: ChatCompletionRequest) -> Response:
    """Forward one chat request upstream with token ids switched on; record; answer the client."""
    fmt = gw.fmt
    messages = to_messages(req.messages, getattr(fmt, "think_start", ""), getattr(fmt, "think_end", ""))
    wants_ids, wants_lp = bool(payload.get("return_token_ids")), bool(payload.get("logprobs"))
    body = {**payload, "return_token_ids": True, "logprobs": True}
    body.pop("top_logprobs", None) if not wants_lp else None
    if req.stream:
        return await _forward_stream(gw, upstream, session, body, messages, wants_ids, wants_lp)
    try:
        r = await upstream.client().post("/chat/completions", json=body)
    except httpx.HTTPError as exc:
        raise GatewayError(502, f"the upstream server at {upstream.base_url} did not answer: {exc}",
                           code="upstream_unreachable") from None
    if r.status_code != 200:  # the upstream's own 4xx/5xx, passed through as it is
        return Response(r.content, status_code=r.status_code, media_type="application/json")
    data = r.json()
    cap = _Captured()
    choice = data["choices"][0]
    _take_ids(cap, data, choice)
    msg = choice.get("message") or {}
    cap.content, cap.reasoning = msg.get("content") or "", msg.get("reasoning_content") or msg.get("reasoning")
    for i, c in enumerate(msg.get("tool_calls") or []):
        cap.calls[i] = {"id": c.get("id"), "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
    cap.finish = choice.get("finish_reason")
    _record(gw, upstream, session, cap, messages)
    if not wants_ids:
        for key in _EXTENSION_KEYS:
            data.pop(key, None)
        choice.pop("token_ids", None)
    if not wants_lp:
        choice["logprobs"] = None
    return JSONResponse(data)


async def _forward_stream(gw: Gateway, upstream: Upstream, session: Session, body: dict[str, Any],
                          messages: list[Message], wants_ids: bool, wants_lp: bool) -> Response:
    client = upstream.client()
    try:
        response = await client.send(client.build_request("POST", "/chat/completions", json=body), stream=True)
    except httpx.HTTPError as exc:
        raise GatewayError(502, f"the upstream server at {upstream.base_url} did not answer: {exc}",
                           code="upstream_unreachable") from None
    if response.status_code != 200:
        content = await response.aread()
        await response.aclose()
        return Response(content, status_code=response.status_code, media_type="application/json")

    async def relay() -> AsyncIterator[bytes]:
        cap = _Captured()
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    _record(gw, upstream, session, cap, messages)
                    yield b"data: [DONE]\n\n"
                    continue
                chunk = json.loads(data)
                _take_chunk(cap, chunk)
                if not wants_ids:
                    for key in _EXTENSION_KEYS:
                        chunk.pop(key, None)
                for choice in chunk.get("choices") or []:
                    if not wants_ids:
                        choice.pop("token_ids", None)
                    if not wants_lp and "logprobs" in choice:
                        choice["logprobs"] = None
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
        finally:
            await response.aclose()

    return StreamingResponse(relay(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _take_ids(cap: _Captured, data: dict[str, Any], choice: dict[str, Any]) -> None:
    if isinstance(data.get("forgerl"), dict):
        cap.take_extension(data["forgerl"])
        return
    if data.get("prompt_token_ids") is not None:
        cap.prompt_ids = list(data["prompt_token_ids"])
    cap.completion_ids += list(choice.get("token_ids") or [])
    cap.logprobs += [float(t["logprob"]) for t in ((choice.get("logprobs") or {}).get("content") or [])]


def _take_chunk(cap: _Captured, chunk: dict[str, Any]) -> None:
    if isinstance(chunk.get("forgerl"), dict):
        cap.take_extension(chunk["forgerl"])
    elif chunk.get("prompt_token_ids") is not None:
        cap.prompt_ids = list(chunk["prompt_token_ids"])
    for choice in chunk.get("choices") or []:
        if not isinstance(chunk.get("forgerl"), dict):
            cap.completion_ids += list(choice.get("token_ids") or [])
            cap.logprobs += [float(t["logprob"]) for t in ((choice.get("logprobs") or {}).get("content") or [])]
        delta = choice.get("delta") or {}
        cap.content += delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            cap.reasoning = (cap.reasoning or "") + reasoning
        for tc in delta.get("tool_calls") or []:
            slot = cap.calls.setdefault(tc.get("index", 0), {"id": None, "name": "", "arguments": ""})
            slot["id"] = tc.get("id") or slot["id"]
            fn = tc.get("function") or {}
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""
        cap.finish = choice.get("finish_reason") or cap.finish


def _record(gw: Gateway, upstream: Upstream, session: Session, cap: _Captured, messages: list[Message]) -> None:
    """Record the call, or say loudly why it cannot be (a server that returns no token ids)."""
    if cap.prompt_ids is None or len(cap.logprobs) != len(cap.completion_ids):
        log.error("upstream %s returned no usable token ids (prompt ids %s, %d ids, %d logprobs); call not recorded",
                  upstream.base_url, "present" if cap.prompt_ids is not None else "missing", len(cap.completion_ids),
                  len(cap.logprobs))
        gw.counters["unrecorded_calls"] = gw.counters.get("unrecorded_calls", 0) + 1
        return
    if session.ended:
        gw.counters["late_calls"] = gw.counters.get("late_calls", 0) + 1
        return
    version = cap.version if cap.version is not None else upstream.policy_version
    finish = "length" if cap.finish == "length" else "stop"
    result = GenerationResult(cap.completion_ids, cap.logprobs, finish, version, len(cap.prompt_ids))
    session.record(session.plan_ids(cap.prompt_ids), result, "", messages, cap.reply(), None)
    gw.counters["calls"] += 1
