"""The vLLM adapter: forgerl's engine protocol over a vLLM OpenAI-compatible server.

Token in, token out: the prompt goes to `/v1/completions` as a list of token ids, and the sampled
token ids come back in `choices[0].token_ids` (`return_token_ids`), with one logprob per sampled
token (`logprobs: 0` asks for the sampled token's logprob only). No text round trip, so the ids the
trainer sees are exactly the ids the server sampled.

Which logprobs: the server runs with `--logprobs-mode raw_logprobs` (server.py), the log-softmax of
the raw model logits before temperature, top-p/top-k or penalties. That is the convention of the
built-in engine (engine/base.py) and what the trainer recomputes for the CISPO importance ratio;
at temperature 1 with no truncation it is also exactly the behaviour policy's sampling probability.
(`processed_logprobs` would give the temperature-scaled, truncated distribution instead; the trainer
does not recompute that one, so mixing them would bias the ratio.)

Sampling settings are sent explicitly on every request (and the server starts with
`--generation-config vllm`), so a model's `generation_config.json` can never change them silently.

Policy version: every result is stamped with the adapter's version when the request was sent.
Weight pushes (weights.py) pause the server in drain mode, so a request the server had already
admitted finishes on the old weights and is stamped old, correctly. A request that reaches the
server while it is paused runs after the resume on the new weights but keeps the old stamp: it
looks staler than it is (the safe direction); a result never carries a newer stamp than its weights.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from forgerl.engine.base import GenerationResult, SamplingParams, TokenEvent
from forgerl.errors import ContextLengthError, EngineError
from forgerl.types import Timings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_FINISH = {"stop": "stop", "length": "length", "abort": "abort"}


def completion_body(model: str, prompt_ids: list[int], params: SamplingParams, stop_token_ids: frozenset[int],
                    *, stream: bool = False) -> dict[str, Any]:
    """The `/v1/completions` request for one generation: every sampling field explicit."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt_ids),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,  # 0 disables top-k in both
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "stop": list(params.stop),
        "stop_token_ids": sorted(stop_token_ids | set(params.stop_token_ids)),
        "logprobs": 0,  # the sampled token's logprob only
        "return_token_ids": True,
        "skip_special_tokens": False,
        "include_stop_str_in_output": True,  # the ids always include the stop; keep text consistent
        "echo": False,
        "n": 1,
        "stream": stream,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _token_logprobs(choice: Mapping[str, Any], n_ids: int) -> list[float]:
    lp = choice.get("logprobs") or {}
    values = lp.get("token_logprobs")
    if values is None:
        raise EngineError("vLLM returned no logprobs (the request asked for logprobs=0): is this a vLLM server?")
    if len(values) != n_ids:
        raise EngineError(f"vLLM returned {n_ids} token ids but {len(values)} logprobs")
    if any(v is None for v in values):
        raise EngineError("vLLM returned a null logprob for a sampled token")
    return [float(v) for v in values]


def _cached_tokens(usage: Mapping[str, Any] | None) -> int:
    details = (usage or {}).get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
    except ValueError:
        msg = resp.text[:500]
    return f"vLLM answered HTTP {resp.status_code}: {msg}"


def _raise_for_status(resp: httpx.Response, n_prompt: int, max_context: int) -> None:
    if resp.status_code < 400:
        return
    message = _error_message(resp)
    if resp.status_code == 400 and ("context length" in message or "maximum context" in message
                                    or "max_model_len" in message or "too long" in message):
        raise ContextLengthError(f"prompt has {n_prompt} tokens; the vLLM server's context is {max_context}: {message}")
    raise EngineError(message)


class VLLMEngine:
    """The engine protocol against a running vLLM server at `base_url`.

    `tokenizer` is loaded in the trainer's own environment (the server's tokenizer is the same
    files); `stop_token_ids` are added to every request (the chat format's end-of-message token).
    `supervisor` (server.VLLMServer), when given, lets a request that failed because the server
    died wait for the restart and retry (`max_retries` times): nothing of a failed request reached
    the caller, so a retry is a fresh sample, never a splice.
    """

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        model_name: str,
        max_context: int = 2048,
        stop_token_ids: tuple[int, ...] = (),
        policy_version: int = 0,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        supervisor: Any | None = None,
        max_retries: int = 2,
        strict_pushes: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context = max_context
        self.policy_version = policy_version
        self.default_stop_ids = frozenset(stop_token_ids)
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.supervisor = supervisor
        self.max_retries = max_retries
        self.strict_pushes = strict_pushes
        self.extra_body = dict(extra_body or {})  # extra vLLM request fields (the bench: ignore_eos)
        self.last_push: Any | None = None  # the newest PushResult (timings, sizes, errors)
        self._transport = transport
        self._sync_transport = sync_transport
        # one client per event loop (a client's connections belong to the loop that opened them)
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
        self._closed = False
        self.pusher: Any | None = None  # weights.VLLMWeightPusher, set by attach_pusher
        self.stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0, "retries": 0}

    # ------------------------------------------------------------------ protocol
    async def generate(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None) -> GenerationResult:
        result = None
        async for event in self._run(prompt_ids, params, session_id, stream=False):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
                     ) -> AsyncIterator[TokenEvent | GenerationResult]:
        async for event in self._run(prompt_ids, params, session_id, stream=True):
            yield event

    def update_weights(self, state_dict: Mapping[str, Any], version: int) -> None:
        """Push `state_dict` as policy `version` (needs a pusher: see weights.VLLMWeightPusher).

        The version only moves when the push landed. A push that failed because the server died is
        retried once after the supervisor restarted it. A push that still fails is logged and fed
        to the stale-weights alarm, and training goes on (off-policy, loudly), as with the built-in
        server's pusher; `strict_pushes=True` raises EngineError instead."""
        if self.pusher is None:
            raise EngineError("this vLLM engine has no weight pusher: build it with engine.vllm.open_vllm_engine, "
                              "or call attach_pusher(VLLMWeightPusher(...))")
        result = self.pusher.push(state_dict, version)
        if (not result.ok and self.supervisor is not None and not self.supervisor.healthy()
                and self.supervisor.ensure_running()):
            result = self.pusher.push(state_dict, version)
        self.last_push = result
        if result.ok:
            self.policy_version = version
            return
        message = f"weight push of version {version} to vLLM failed: {result.error}"
        if self.strict_pushes:
            raise EngineError(message)
        log.error("%s; rollouts keep sampling version %d", message, self.policy_version)

    def attach_pusher(self, pusher: Any) -> None:
        self.pusher = pusher

    async def aclose(self) -> None:
        """Close this loop's HTTP client, then as close()."""
        entry = self._clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()
        self.close()

    def close(self) -> None:
        """Sync close for the trainer (run.close_run): drops clients, stops the pusher and server."""
        self._closed = True
        self._clients = {}
        if self.pusher is not None:
            self.pusher.close()
        if self.supervisor is not None:
            self.supervisor.stop()

    # ------------------------------------------------------------------ internals
    def _client(self) -> httpx.AsyncClient:
        import httpx

        loop = asyncio.get_running_loop()
        for key in [k for k, (lp, _) in self._clients.items() if lp.is_closed()]:
            del self._clients[key]  # clients of finished asyncio.run loops (their sockets went with them)
        entry = self._clients.get(id(loop))
        client = entry[1] if entry is not None else None
        if client is None or client.is_closed:
            timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
            client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, limits=limits, transport=self._transport)
            self._clients[id(loop)] = (loop, client)
        return client

    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if self._closed:
            raise EngineError("the vLLM engine is closed")
        params.validate()
        if not prompt_ids:
            raise EngineError("empty prompt: at least one token is needed")
        if len(prompt_ids) >= self.max_context:
            raise ContextLengthError(
                f"prompt has {len(prompt_ids)} tokens but the context limit is {self.max_context} "
                "(shorten the prompt or start the vLLM server with a larger --max-model-len)")
        if min(prompt_ids) < 0:
            raise EngineError(f"prompt token ids must be >= 0; got {min(prompt_ids)}")

    async def _run(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None, *, stream: bool
                   ) -> AsyncIterator[TokenEvent | GenerationResult]:
        import httpx

        prompt_ids = list(prompt_ids)
        self._check(prompt_ids, params)
        # cap max_tokens at what fits, as the built-in engine does ("length" at the context limit)
        capped = SamplingParams(**{**params.__dict__, "max_tokens": min(params.max_tokens, self.max_context - len(prompt_ids))})
        body = {**completion_body(self.model_name, prompt_ids, capped, self.default_stop_ids, stream=stream), **self.extra_body}
        attempt = 0
        while True:
            version = self.policy_version
            created = time.perf_counter()
            emitted = 0
            try:
                if stream:
                    async for event in self._post_stream(body, prompt_ids, version, created):
                        if isinstance(event, TokenEvent):
                            emitted += 1
                        yield event
                else:
                    yield await self._post(body, prompt_ids, version, created)
                return
            except (httpx.TransportError, _ServerGone) as exc:
                # a connection refused/reset or a 5xx from a dying server; retry only if nothing
                # reached the caller yet and a supervisor can bring the server back
                if emitted or self.supervisor is None or attempt >= self.max_retries:
                    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
                    raise EngineError(f"vLLM request {kind} ({type(exc).__name__}: {exc}) at {self.base_url}") from exc
                attempt += 1
                self.stats["retries"] += 1
                log.warning("vLLM request failed (%s); waiting for the server to come back (retry %d/%d)",
                            exc, attempt, self.max_retries)
                ok = await asyncio.to_thread(self.supervisor.ensure_running)
                if not ok:
                    raise EngineError(f"the vLLM server at {self.base_url} died and could not be restarted: "
                                      f"{self.supervisor.last_error}") from exc

    async def _post(self, body: dict[str, Any], prompt_ids: list[int], version: int, created: float) -> GenerationResult:
        resp = await self._client().post("/v1/completions", json=body)
        if resp.status_code >= 500:
            raise _ServerGone(_error_message(resp))
        _raise_for_status(resp, len(prompt_ids), self.max_context)
        data = resp.json()
        choices = data.get("choices") or []
        if not choices:
            raise EngineError(f"vLLM returned no choices: {str(data)[:300]}")
        choice = choices[0]
        ids = choice.get("token_ids")
        if ids is None:
            raise EngineError("vLLM returned no token_ids: the server must support `return_token_ids` (vLLM >= 0.10)")
        ids = [int(t) for t in ids]
        logprobs = _token_logprobs(choice, len(ids))
        return self._result(ids, logprobs, choice, data.get("usage"), prompt_ids, version, created)

    async def _post_stream(self, body: dict[str, Any], prompt_ids: list[int], version: int, created: float
                           ) -> AsyncIterator[TokenEvent | GenerationResult]:
        ids: list[int] = []
        logprobs: list[float] = []
        last_choice: dict[str, Any] = {}
        usage = None
        first_token_at = None
        async with self._client().stream("POST", "/v1/completions", json=body) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                if resp.status_code >= 500:
                    raise _ServerGone(_error_message(resp))
                _raise_for_status(resp, len(prompt_ids), self.max_context)
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    raise EngineError(f"vLLM stream error: {chunk['error']}")
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    new_ids = [int(t) for t in (choice.get("token_ids") or [])]
                    new_lps = _token_logprobs(choice, len(new_ids)) if new_ids else []
                    if new_ids and first_token_at is None:
                        first_token_at = time.perf_counter()
                    for tok, lp in zip(new_ids, new_lps, strict=True):
                        ids.append(tok)
                        logprobs.append(lp)
                        yield TokenEvent(tok, lp)
                    if choice.get("finish_reason") is not None:
                        last_choice = choice
        if not last_choice:
            raise EngineError("the vLLM stream ended without a finish_reason")
        yield self._result(ids, logprobs, last_choice, usage, prompt_ids, version, created, first_token_at)

    def _result(self, ids: list[int], logprobs: list[float], choice: Mapping[str, Any], usage: Mapping[str, Any] | None,
                prompt_ids: list[int], version: int, created: float, first_token_at: float | None = None) -> GenerationResult:
        finish = _FINISH.get(str(choice.get("finish_reason")), "error")
        stop_reason = choice.get("stop_reason")
        if finish == "stop" and stop_reason is None and ids:
            stop_reason = ids[-1]  # vLLM reports None when the model's own EOS ended it
        now = time.perf_counter()
        cached = _cached_tokens(usage)
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(prompt_ids)
        self.stats["cached_tokens"] += cached
        self.stats["generated_tokens"] += len(ids)
        prefill = (first_token_at - created) if first_token_at is not None else 0.0
        return GenerationResult(
            completion_ids=ids, logprobs=logprobs, finish_reason=finish,  # type: ignore[arg-type]
            policy_version=version, prompt_tokens=len(prompt_ids), cached_tokens=cached,
            stop_reason=stop_reason, timings=Timings(prefill_s=prefill, decode_s=now - created - prefill, total_s=now - created))


class _ServerGone(Exception):
    """A 5xx: the server is failing (often: its engine core died); retried like a lost connection."""


def health(base_url: str, *, timeout_s: float = 2.0, transport: Any = None) -> bool:
    """True when the server answers GET /health with 200."""
    import httpx

    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as c:
            return c.get(f"{base_url.rstrip('/')}/health").status_code == 200
    except httpx.HTTPError:
        return False

