"""An OpenAI-compatible HTTP server over any forgerl Engine.

Why it exists: black-box agent programs (and people with `curl`) speak the OpenAI chat API; this
lets them use a forgerl engine, and — with the `return_token_ids` extension — get back the exact
prompt and completion ids, logprobs and policy version that RL training needs (DESIGN contract 1).

Request path: OpenAI messages -> forgerl Messages (convert.py) -> `chat_format.render` ->
`encode_segments` -> `engine.generate`/`engine.stream` -> decode -> `chat_format.parse` ->
`reasoning_content` / `content` / `tool_calls`. Everything but the HTTP routes lives in chat.py,
which the gateway shares.

What is and is not honoured:
* `tool_choice`: "auto" (default) and "none" (tools are not rendered and no tool calls are
  returned). "required" and a named function are rejected with 400: forgerl has no constrained
  decoding, so it could not guarantee the model calls a tool, and pretending would be dishonest.
* `n` must be 1; `presence_penalty`/`frequency_penalty` must be 0; `logit_bias` empty;
  `response_format` "text"; `top_logprobs` 0. Anything else is a 400, not silently ignored.
* `logprobs` are the engine's logprobs of the sampled tokens (the raw model log-softmax, see
  SamplingParams); `top_logprobs` lists are empty. `bytes` are the UTF-8 bytes of the decoded token
  text, which for a token holding half a multi-byte character is the replacement character.
* A completion the chat format cannot parse comes back as raw text in `content` with
  finish_reason "stop" (or "length"), never as a server error.

Weight sync (admin.py): with an admin token, `POST /admin/weights` loads a safetensors file as
policy version N. By default new requests wait while in-flight ones drain, so every completion is
sampled by exactly one version; each response carries it in the `x-forgerl-policy-version` header
(and in the `forgerl` body extension).

Token-id completions (completions.py): `POST /v1/completions` takes the prompt as token ids and
answers in vLLM's shape, so a trainer in another process drives this server with the same client
as a vLLM server (engine/remote.py).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgerl.chat.base import ChatFormat, get_format
from forgerl.engine import load_engine
from forgerl.engine.base import Engine
from forgerl.server.admin import VERSION_HEADER, AdmissionGate, add_admin_routes
from forgerl.server.auth import API_KEY_ENV, ApiKeyMiddleware, exposure_warning
from forgerl.server.chat import ChatServer, chat_response, parse_and_prepare, stream_body
from forgerl.server.completions import add_completion_routes
from forgerl.server.convert import RequestError
from forgerl.server.limits import DEFAULT_MAX_BODY_BYTES, install_body_limit
from forgerl.server.protocol import engine_failure, error_response

log = logging.getLogger(__name__)

__all__ = ["create_app", "serve"]


def create_app(engine: Engine, chat_format: ChatFormat, *, served_model_name: str | None = None,
               admin_token: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               api_key: str | None = None, weights_dir: str | os.PathLike[str] | None = None) -> FastAPI:
    """A FastAPI app serving `engine` under `served_model_name` (default: the engine's model name).

    `admin_token` enables the weight-sync routes (`/admin/weights`) for callers presenting it as a
    bearer token; without one they answer 404 and say how to enable them. Request bodies over
    `max_body_bytes` get a 413 (server/limits.py). `api_key`: every `/v1` request must present it
    as a bearer token (401 otherwise; server/auth.py); `/health` stays open. `weights_dir`: where
    weight pushes that give a file *name* are read from (the `dir` transport, weights/dir.py)."""
    srv = ChatServer(engine, chat_format, served_model_name)
    gate = AdmissionGate()
    app = FastAPI(title="forgerl", description="OpenAI-compatible API over a forgerl engine")
    app.state.forgerl = srv
    app.state.gate = gate
    install_body_limit(app, max_body_bytes)
    if api_key:  # added last, so it runs first: a refused request's body is never read
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    add_admin_routes(app, engine, gate, admin_token, Path(weights_dir) if weights_dir is not None else None)
    add_completion_routes(app, engine, gate, srv.model_name)  # token-id prompts: the trainer's route

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", type_=kind)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": srv.model_name, "policy_version": srv.engine.policy_version}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": srv.model_name, "object": "model", "created": srv.created, "owned_by": "forgerl",
            "max_model_len": srv.engine.max_context,
        }]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        raw = await request.body()
        try:  # parsing, rendering and tokenizing a long conversation take seconds: off the event loop
            prep = await run_in_threadpool(parse_and_prepare, srv, raw)
        except RequestError as exc:
            return error_response(exc.status, exc.message, type_="not_found_error" if exc.status == 404 else exc.type,
                        param=exc.param, code=exc.code)
        req = prep.req
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        await gate.enter()  # waits while a weight update drains the engine
        if not req.stream:
            try:
                result = await srv.engine.generate(prep.prompt_ids, prep.params)
            except Exception as exc:  # noqa: BLE001 — engine failures become 4xx/5xx, never a crash
                return engine_failure(exc, "messages")
            finally:
                gate.exit()
            if result.finish_reason == "error":
                return error_response(500, "the engine reported an error for this completion", type_="server_error",
                            code="engine_error")
            return JSONResponse(chat_response(srv, prep, result, rid),
                                headers={VERSION_HEADER: str(result.policy_version)})
        # Pull the first event before answering, so errors raised up front get a real status code.
        version = srv.engine.policy_version  # fixed for the request: updates wait for it to drain
        release = gate.releaser()
        try:
            events = aiter(srv.engine.stream(prep.prompt_ids, prep.params))
            first_event = await anext(events)
        except StopAsyncIteration:
            release()
            return error_response(500, "engine stream ended without a result", type_="server_error", code="engine_error")
        except Exception as exc:  # noqa: BLE001
            release()
            return engine_failure(exc, "messages")
        # released when the body ends, or by the background task if the client left before it began
        return StreamingResponse(
            stream_body(srv, prep, events, first_event, rid, release=release), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", VERSION_HEADER: str(version)},
            background=BackgroundTask(release),
        )

    return app


def serve(
    model: str = "default", host: str = "127.0.0.1", port: int = 8000, chat_format: str = "minimax_m2",
    *, served_model_name: str | None = None, log_level: str = "info", admin_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, api_key: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None, speculative: int | None = None,
) -> None:
    """Load `model` with the built-in engine and serve it until interrupted (loopback by default).

    The weight-sync admin routes are enabled by `admin_token` or the FORGERL_ADMIN_TOKEN variable;
    the `/v1` routes need `api_key` (or FORGERL_API_KEY) as a bearer token when one is set.
    `served_model_name` is the id clients see and send (the model's path stays private)."""
    import uvicorn  # only when serving: importing the app (tests, the gateway) does not start a server

    key = api_key or os.environ.get(API_KEY_ENV) or None
    warning = exposure_warning(host, key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    engine = load_engine(model, chat_format=chat_format, speculative=speculative)
    token = admin_token or os.environ.get("FORGERL_ADMIN_TOKEN") or None
    app = create_app(engine, get_format(chat_format), served_model_name=served_model_name, admin_token=token,
                     max_body_bytes=max_body_bytes, api_key=key, weights_dir=weights_dir)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
