"""The engine protocol over HTTP: token ids to a completions server in another process.

Token in, token out: the prompt goes to `/v1/completions` as a list of token ids, and the sampled
token ids come back in `choices[0].token_ids` (`return_token_ids`), with one logprob per sampled
token (`logprobs: 0` asks for the sampled token's logprob only). No text round trip, so the ids the
trainer sees are exactly the ids the server sampled. Two servers speak this: `forgerl serve`
(server/completions.py) and vLLM (engine/vllm; `VLLMEngine` is this class with vLLM's defaults).

Which logprobs: the raw model log-softmax before temperature, top-p/top-k or penalties — what the
built-in engine returns (engine/base.py) and what the trainer recomputes for the CISPO ratio.
Sampling settings are sent explicitly on every request, so a server's defaults (a checkpoint's
generation_config) can never change them silently.

Policy version: a result carries the version the server reports for it (`forgerl serve` stamps
every completion: the `forgerl.policy_version` field / `x-forgerl-policy-version` header); a
server that reports none (vLLM) gets the client's version at send time. `update_weights` goes
through a weight transport (forgerl/weights: `WeightPusher` for `forgerl serve`, `VLLMWeightPusher`
for vLLM) and moves `policy_version` only when the push landed.

Failures: every transport error, timeout, 5xx or malformed answer is an EngineError, which the
agent loop records as an infrastructure failure (the trajectory is FAILED, never a fake zero
reward). With a `supervisor` (a `ServerWatch` for a server someone else runs, or engine/vllm's
`VLLMServer`), a request the server never received (connection refused: it is down) waits for the
server to come back and is sent again. A request the server had already received is only sent again
when `retry_in_flight` is set (vLLM's adapter does: a fresh sample, never a splice); by default it
fails, so a rollout that was running when the engine died is recorded as failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from forgerl.engine.base import (
    EngineDown,
    EngineUnreachable,
    GenerationResult,
    SamplingParams,
    TokenEvent,
    final_result,
)
from forgerl.errors import ConfigError, ContextLengthError, EngineError
from forgerl.types import Timings
from forgerl.weights import StaleWeightsAlarm, WeightPusher, default_shared_dir
from forgerl.weights.dir import DirWeightPusher

if TYPE_CHECKING:
    import httpx

    from forgerl.weights.files import WeightDir

log = logging.getLogger(__name__)

_FINISH = {"stop": "stop", "length": "length", "abort": "abort"}
VERSION_HEADER = "x-forgerl-policy-version"  # as server/admin.py (not imported: keeps FastAPI out)


def completion_body(model: str, prompt_ids: list[int], params: SamplingParams, stop_token_ids: frozenset[int],
                    *, stream: bool = False) -> dict[str, Any]:
    """The `/v1/completions` request for one generation: every sampling field explicit."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt_ids),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,  # 0 disables top-k in both servers
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


def _reported_version(body: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None) -> int | None:
    """The policy version a server stamped on a response (body extension first, then header)."""
    ext = (body or {}).get("forgerl")
    if isinstance(ext, Mapping) and isinstance(ext.get("policy_version"), int):
        return int(ext["policy_version"])
    raw = (headers or {}).get(VERSION_HEADER)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def health(base_url: str, *, timeout_s: float = 2.0, transport: Any = None) -> bool:
    """True when the server answers GET /health with 200."""
    import httpx

    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as c:
            return c.get(f"{base_url.rstrip('/')}/health").status_code == 200
    except httpx.HTTPError:
        return False


class ServerWatch:
    """The supervisor of a server someone else runs (`forgerl serve` started by hand or by a test):
    it cannot restart it, only wait for it. `ensure_running` polls `/health` until the server
    answers (True) or `reconnect_timeout_s` passed (False), then calls `on_restart` (the weight
    pusher's `restore`, which pushes the newest weights again if the server is a new process)."""

    def __init__(self, base_url: str, *, reconnect_timeout_s: float = 600.0, poll_s: float = 0.5,
                 on_restart: Callable[[], Any] | None = None, transport: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.reconnect_timeout_s, self.poll_s = reconnect_timeout_s, poll_s
        self.on_restart = on_restart
        self.last_error = ""
        self.outages = 0
        self._transport = transport
        self._lock = threading.Lock()  # rollouts ask concurrently (from worker threads); one waits, the rest queue

    def healthy(self) -> bool:
        return health(self.base_url, transport=self._transport)

    def ensure_running(self) -> bool:
        with self._lock:
            if not self.healthy():
                self.outages += 1
                log.warning("the inference server at %s is down; waiting up to %.0fs for it to come back",
                            self.base_url, self.reconnect_timeout_s)
                deadline = time.monotonic() + self.reconnect_timeout_s
                while not self.healthy():
                    if time.monotonic() > deadline:
                        self.last_error = (f"{self.base_url} did not answer /health for {self.reconnect_timeout_s:.0f}s; "
                                           "restart `forgerl serve` there (with the same --admin-token)")
                        return False
                    time.sleep(self.poll_s)
                log.warning("the inference server at %s is back", self.base_url)
            if self.on_restart is not None:
                try:
                    self.on_restart()
                except Exception as exc:  # noqa: BLE001 — a failed restore is the alarm's business
                    log.error("restoring the weights on %s failed: %s", self.base_url, exc)
            return True

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""


class _ServerGone(Exception):
    """A 5xx: the server is failing (often: its engine died); retried like a lost connection."""


class RemoteEngine:
    """The engine protocol against a completions server at `base_url` (see the module docstring).

    `tokenizer` is loaded in the caller's own process (the server's must be the same files);
    `stop_token_ids` are added to every request (the chat format's end-of-message token).
    `supervisor` (ServerWatch or engine.vllm.VLLMServer), when given, lets a failed request wait
    for the server to come back and retry, `max_retries` times.
    """

    server_kind = "remote engine"  # how error messages name the server
    pusher_hint = ("build it with engine.remote.open_remote_engine, or call attach_pusher(WeightPusher(...)) "
                   "with the server's admin token (forgerl/weights/http_push.py)")

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
        retry_in_flight: bool = False,
        strict_pushes: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # `forgerl serve --api-key` (or vLLM's --api-key): sent as a bearer token on every request
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context = max_context
        self.policy_version = policy_version
        self.default_stop_ids = frozenset(stop_token_ids)
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.supervisor = supervisor
        self.max_retries = max_retries
        self.retry_in_flight = retry_in_flight
        self.strict_pushes = strict_pushes
        self.extra_body = dict(extra_body or {})  # extra request fields (vLLM's bench: ignore_eos)
        self.last_push: Any | None = None  # the newest PushResult (timings, sizes, errors)
        self.server_version: int | None = None  # the newest version a server response reported
        self._transport = transport
        self._sync_transport = sync_transport
        # one client per event loop (a client's connections belong to the loop that opened them)
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
        self._closed = False
        self.pusher: Any | None = None  # set by attach_pusher
        self.stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0, "retries": 0}

    # ------------------------------------------------------------------ protocol
    async def generate(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None) -> GenerationResult:
        return await final_result(self._run(prompt_ids, params, session_id, stream=False))

    async def stream(self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
                     ) -> AsyncIterator[TokenEvent | GenerationResult]:
        async for event in self._run(prompt_ids, params, session_id, stream=True):
            yield event

    def update_weights(self, state_dict: Mapping[str, Any], version: int, *, force: bool = False) -> None:
        """Push `state_dict` as policy `version` through the attached pusher.

        The version only moves when the push landed. A push that failed because the server is down
        is retried once after the supervisor saw it come back. A push that still fails is logged
        and fed to the stale-weights alarm, and training goes on (off-policy, loudly);
        `strict_pushes=True` raises EngineError instead. `force` is for attaching to a server
        (see WeightPusher.push); not every pusher supports it."""
        if self.pusher is None:
            raise EngineError(f"this {self.server_kind} has no weight pusher: {self.pusher_hint}")
        kwargs = {"force": True} if force else {}
        result = self.pusher.push(state_dict, version, **kwargs)
        if (not result.ok and self.supervisor is not None and not self.supervisor.healthy()
                and self.supervisor.ensure_running()):
            result = self.pusher.push(state_dict, version, **kwargs)
        self.last_push = result
        if result.ok:
            self.policy_version = version
            return
        message = f"weight push of version {version} to the {self.server_kind} failed: {result.error}"
        if self.strict_pushes:
            raise EngineError(message)
        log.error("%s; rollouts keep sampling version %d", message, self.policy_version)

    def attach_pusher(self, pusher: Any) -> None:
        self.pusher = pusher

    def healthy(self) -> bool:
        """The server answers /health (the router's probe of a down engine)."""
        return health(self.base_url, transport=self._sync_transport)

    def readmit(self, version: int) -> bool:
        """Make the server serve `version` again (after a restart it serves its own weights): the
        pusher posts that version's file once more. True when the server now reports `version`."""
        if self.pusher is None or not hasattr(self.pusher, "reload"):
            return self.policy_version == version
        if not self.pusher.reload(version):
            return False
        self.policy_version = version
        return True

    async def aclose(self) -> None:
        """Close this loop's HTTP client, then as close()."""
        entry = self._clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].aclose()
        self.close()

    def close(self) -> None:
        """Sync close for the trainer (run.close_run): drops clients, stops the pusher and supervisor."""
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
            client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, limits=limits, transport=self._transport,
                                       headers=self._auth)
            self._clients[id(loop)] = (loop, client)
        return client

    def _check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if self._closed:
            raise EngineError(f"the {self.server_kind} client is closed")
        params.validate()
        if not prompt_ids:
            raise EngineError("empty prompt: at least one token is needed")
        if len(prompt_ids) >= self.max_context:
            raise ContextLengthError(
                f"prompt has {len(prompt_ids)} tokens but the context limit is {self.max_context} "
                f"(shorten the prompt or give the {self.server_kind} a larger context)")
        if min(prompt_ids) < 0:
            raise EngineError(f"prompt token ids must be >= 0; got {min(prompt_ids)}")

    def _retryable(self, exc: Exception) -> bool:
        import httpx

        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        return never_sent or self.retry_in_flight

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
                # a connection refused/reset or a 5xx from a dying server; retried only if nothing
                # reached the caller yet and a supervisor can bring the server back (or wait for it)
                if emitted or self.supervisor is None or attempt >= self.max_retries or not self._retryable(exc):
                    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
                    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) and not emitted
                    error = EngineUnreachable if never_sent else EngineDown  # the router routes around both
                    raise error(f"{self.server_kind} request {kind} ({type(exc).__name__}: {exc}) "
                                f"at {self.base_url}") from exc
                attempt += 1
                self.stats["retries"] += 1
                log.warning("%s request failed (%s); waiting for the server to come back (retry %d/%d)",
                            self.server_kind, exc, attempt, self.max_retries)
                ok = await asyncio.to_thread(self.supervisor.ensure_running)
                if not ok:
                    raise EngineDown(f"the {self.server_kind} at {self.base_url} died and could not be restarted: "
                                      f"{self.supervisor.last_error}") from exc

    async def _post(self, body: dict[str, Any], prompt_ids: list[int], version: int, created: float) -> GenerationResult:
        resp = await self._client().post("/v1/completions", json=body)
        if resp.status_code >= 500:
            raise _ServerGone(self._error_message(resp))
        self._raise_for_status(resp, len(prompt_ids))
        try:
            data = resp.json()
        except ValueError as exc:
            raise EngineError(f"the {self.server_kind} answered with invalid JSON: {resp.text[:300]!r}") from exc
        choices = data.get("choices") or []
        if not choices:
            raise EngineError(f"the {self.server_kind} returned no choices: {str(data)[:300]}")
        choice = choices[0]
        ids = choice.get("token_ids")
        if ids is None:
            raise EngineError(f"the {self.server_kind} returned no token_ids: the server must support "
                              "`return_token_ids` (forgerl serve, or vLLM >= 0.10)")
        ids = [int(t) for t in ids]
        logprobs = self._token_logprobs(choice, len(ids))
        version = self._stamp(version, _reported_version(data, resp.headers))
        return self._result(ids, logprobs, choice, data.get("usage"), prompt_ids, version, created)

    async def _post_stream(self, body: dict[str, Any], prompt_ids: list[int], version: int, created: float
                           ) -> AsyncIterator[TokenEvent | GenerationResult]:
        ids: list[int] = []
        logprobs: list[float] = []
        last_choice: dict[str, Any] = {}
        usage = None
        first_token_at = None
        reported: int | None = None
        async with self._client().stream("POST", "/v1/completions", json=body) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                if resp.status_code >= 500:
                    raise _ServerGone(self._error_message(resp))
                self._raise_for_status(resp, len(prompt_ids))
            reported = _reported_version(None, resp.headers)
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = json.loads(payload)
                except ValueError as exc:
                    raise EngineError(f"the {self.server_kind} sent a malformed stream chunk: {payload[:200]!r}") from exc
                if "error" in chunk:
                    raise EngineError(f"{self.server_kind} stream error: {chunk['error']}")
                usage = chunk.get("usage") or usage
                reported = _reported_version(chunk, None) if "forgerl" in chunk else reported
                for choice in chunk.get("choices") or []:
                    new_ids = [int(t) for t in (choice.get("token_ids") or [])]
                    new_lps = self._token_logprobs(choice, len(new_ids)) if new_ids else []
                    if new_ids and first_token_at is None:
                        first_token_at = time.perf_counter()
                    for tok, lp in zip(new_ids, new_lps, strict=True):
                        ids.append(tok)
                        logprobs.append(lp)
                        yield TokenEvent(tok, lp)
                    if choice.get("finish_reason") is not None:
                        last_choice = choice
        if not last_choice:
            raise EngineError(f"the {self.server_kind} stream ended without a finish_reason")
        version = self._stamp(version, reported)
        yield self._result(ids, logprobs, last_choice, usage, prompt_ids, version, created, first_token_at)

    def _stamp(self, sent_version: int, reported: int | None) -> int:
        """The version a result carries: the server's word when it gives one, else ours at send time."""
        if reported is None:
            return sent_version
        self.server_version = reported
        return reported

    def _token_logprobs(self, choice: Mapping[str, Any], n_ids: int) -> list[float]:
        lp = choice.get("logprobs") or {}
        values = lp.get("token_logprobs")
        if values is None:
            raise EngineError(f"the {self.server_kind} returned no logprobs (the request asked for logprobs=0)")
        if len(values) != n_ids:
            raise EngineError(f"the {self.server_kind} returned {n_ids} token ids but {len(values)} logprobs")
        if any(v is None for v in values):
            raise EngineError(f"the {self.server_kind} returned a null logprob for a sampled token")
        return [float(v) for v in values]

    def _error_message(self, resp: httpx.Response) -> str:
        try:
            body = resp.json()
            err = body.get("error", body) if isinstance(body, dict) else body
            msg = err.get("message", err) if isinstance(err, dict) else err
        except ValueError:
            msg = resp.text[:500]
        return f"{self.server_kind} answered HTTP {resp.status_code}: {msg}"

    def _raise_for_status(self, resp: httpx.Response, n_prompt: int) -> None:
        if resp.status_code < 400:
            return
        message = self._error_message(resp)
        if resp.status_code == 400 and ("context length" in message or "maximum context" in message
                                        or "max_model_len" in message or "too long" in message
                                        or "context limit" in message):
            raise ContextLengthError(f"prompt has {n_prompt} tokens; the {self.server_kind}'s context is "
                                     f"{self.max_context}: {message}")
        raise EngineError(message)

    def _result(self, ids: list[int], logprobs: list[float], choice: Mapping[str, Any], usage: Mapping[str, Any] | None,
                prompt_ids: list[int], version: int, created: float, first_token_at: float | None = None) -> GenerationResult:
        finish = _FINISH.get(str(choice.get("finish_reason")), "error")
        stop_reason = choice.get("stop_reason")
        if finish == "stop" and stop_reason is None and ids:
            stop_reason = ids[-1]  # vLLM reports None when the model's own EOS ended it
        now = time.perf_counter()
        details = (usage or {}).get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0)
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(prompt_ids)
        self.stats["cached_tokens"] += cached
        self.stats["generated_tokens"] += len(ids)
        prefill = (first_token_at - created) if first_token_at is not None else 0.0
        return GenerationResult(
            completion_ids=ids, logprobs=logprobs, finish_reason=finish,  # type: ignore[arg-type]
            policy_version=version, prompt_tokens=len(prompt_ids), cached_tokens=cached,
            stop_reason=stop_reason, timings=Timings(prefill_s=prefill, decode_s=now - created - prefill, total_s=now - created))


def open_remote_engine(
    base_url: str,
    tokenizer: Any,
    *,
    admin_token: str | None = None,
    api_key: str | None = None,
    stop_token_ids: tuple[int, ...] = (),
    max_context: int = 2048,
    initial_weights: Mapping[str, Any] | None = None,
    policy_version: int = 0,
    shared_dir: str | os.PathLike[str] | None = None,
    reconnect_timeout_s: float = 600.0,
    timeout_s: float = 600.0,
    files: WeightDir | None = None,
    by_name: bool = False,
    supervise: bool = True,
) -> RemoteEngine:
    """The trainer's `engine = "remote"`: a RemoteEngine on a running `forgerl serve --admin-token`.

    Checks the server before training starts (it answers, serves a context of at least
    `max_context`, accepts the admin token), then pushes `initial_weights` as `policy_version`
    with force: the server then samples exactly the trainer's weights from the first rollout on,
    whatever it was started with (it must be the same architecture; the push fails otherwise).
    The admin token defaults to $FORGERL_ADMIN_TOKEN, the API key of a server started with
    `--api-key` to $FORGERL_API_KEY. Weights travel as a safetensors file in
    `shared_dir` (default /dev/shm): the trainer and the server must share that filesystem.

    Behind the router (engine/pool.py): `files` is the WeightDir every engine's pusher shares (one
    file per version for all), `by_name` posts file names for the server's --weights-dir (the `dir`
    transport), and `supervise=False` makes a down server fail calls at once (EngineUnreachable)
    instead of waiting for it: the router sends them to another engine."""
    import httpx

    base_url = base_url.rstrip("/")
    token = admin_token or os.environ.get("FORGERL_ADMIN_TOKEN") or None
    if token is None:
        raise ConfigError("engine = 'remote' needs the server's admin token to push weights: set engine_admin_token "
                          "or FORGERL_ADMIN_TOKEN (the token `forgerl serve --admin-token` was started with)")
    api_key = api_key or os.environ.get("FORGERL_API_KEY") or None
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        models = httpx.get(f"{base_url}/v1/models", headers=auth, timeout=30)
        info = httpx.get(f"{base_url}/admin/weights", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot reach the inference server at {base_url} ({type(exc).__name__}: {exc}); "
                          "start it with `forgerl serve --model ... --admin-token ...`") from None
    try:
        served = models.json().get("data") or [] if models.status_code == 200 else []
    except ValueError:
        served = []
    if models.status_code == 401:
        raise ConfigError(f"the inference server at {base_url} wants an API key (it was started with --api-key): "
                          "set FORGERL_API_KEY to the same key")
    if not served:
        raise ConfigError(f"{base_url}/v1/models answered HTTP {models.status_code} without a model: "
                          "is this a `forgerl serve` server?")
    if info.status_code in (401, 404):
        what = "rejected the admin token" if info.status_code == 401 else "has no admin routes (start it with --admin-token)"
        raise ConfigError(f"the inference server at {base_url} {what}; the trainer pushes weights through /admin/weights")
    model = served[0]
    served_context = int(model.get("max_model_len") or max_context)
    if served_context < max_context:
        raise ConfigError(f"max_context is {max_context} but the server at {base_url} serves a context of "
                          f"{served_context}: lower max_context or start the server with a larger one")
    if shared_dir is None and files is None:  # a directory of this engine's own: version file names never collide
        base = default_shared_dir().parent
        base.mkdir(parents=True, exist_ok=True)
        shared_dir = tempfile.mkdtemp(prefix="forgerl-weights-", dir=base)
    alarm = StaleWeightsAlarm(max_lag=0, patience=2, name=f"the inference engine at {base_url}")
    pusher_class = DirWeightPusher if by_name else WeightPusher
    pusher = pusher_class(base_url, admin_token=token, shared_dir=shared_dir, alarm=alarm, files=files)
    watch = ServerWatch(base_url, reconnect_timeout_s=reconnect_timeout_s, on_restart=pusher.restore) if supervise else None
    engine = RemoteEngine(base_url, tokenizer, model_name=str(model["id"]), max_context=max_context,
                          stop_token_ids=stop_token_ids, policy_version=policy_version, supervisor=watch,
                          max_retries=3, timeout_s=timeout_s, api_key=api_key)
    engine.attach_pusher(pusher)
    if initial_weights is not None:
        engine.update_weights(initial_weights, policy_version, force=True)
        if not engine.last_push.ok:
            engine.close()
            raise ConfigError(f"the inference server at {base_url} refused the trainer's initial weights "
                              f"({engine.last_push.error}); it must serve the same model architecture")
    return engine


__all__ = ["RemoteEngine", "ServerWatch", "completion_body", "health", "open_remote_engine"]
