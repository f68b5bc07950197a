"""The gateway's HTTP API: an OpenAI-compatible endpoint per session, plus a small admin API.

Black-box agents (any program speaking the OpenAI chat API) get a base URL and an API key per
rollout; everything they send with that key is recorded into their session's trajectory with the
exact token ids, logprobs and policy version (DESIGN contract 1). Rendering, sampling, response
and streaming behaviour are the forgerl server's (server/chat.py): the gateway adds credentials,
the prompt reconciliation of sessions.py and the recording around them.

Routes (`{v1}` is `/v1`, where the key alone names the session, or `/sessions/{id}/v1`, the
session URL, where a key of another session is refused with 403):

    POST {v1}/chat/completions      the OpenAI call, recorded (tools and streaming pass through)
    GET  {v1}/models                the served model
    GET  {v1}/task                  the session's opening messages and tools (OpenAI shapes)
    POST {v1}/tools/call            run one environment tool: {"name", "arguments", "id"?}
    POST /sessions                  admin: open a session {family?, seed?, difficulty?, task?, ...}
    GET  /sessions                  admin: live sessions
    GET  /sessions/{id}             the session's own key or admin: its state
    POST /sessions/{id}/end         the session's own key or admin: score, store, revoke the key
    GET  /sessions/{id}/trajectory  admin: a finished session's trajectory
    GET  /health

Errors use OpenAI's envelope: 401 unknown/ended/expired credential, 403 a credential used for
another session or for the admin API, 4xx malformed requests naming the field; an engine failure
is a 5xx for that call only.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from forgerl.chat.base import encode_segments, segments_text
from forgerl.engine.base import GenerationResult, TokenEvent
from forgerl.envs.base import Task
from forgerl.errors import ParseError
from forgerl.gateway.core import Gateway, GatewayError
from forgerl.gateway.remote import Upstream, forward_chat
from forgerl.gateway.sessions import Plan, Reconciled, Session, history_key
from forgerl.server.chat import (  # the server's request/response path, shared as is
    ChatServer,
    PreparedRequest,
    chat_response,
    completion_text,
    prepare_request,
    stream_body,
    validation_message,
)
from forgerl.server.convert import RequestError, to_messages
from forgerl.server.limits import DEFAULT_MAX_BODY_BYTES, install_body_limit, parse_json_object
from forgerl.server.protocol import ChatCompletionRequest, engine_failure, error_body
from forgerl.types import Boundary, Failure, Message, TrajectoryStatus

log = logging.getLogger(__name__)

Event = TokenEvent | GenerationResult

__all__ = ["create_gateway_app"]


class OpenSessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str | None = None
    """Task family whose environment scores the session (None: a recording-only session)."""
    seed: int = 0
    difficulty: int | None = None
    task: Task | None = None
    """A whole task instead of (family, seed, difficulty)."""
    group_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float | None = None


class EndSessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["completed", "truncated", "failed"] = "completed"
    reason: str = "ended by the client"
    reward: float | None = None
    """Only for sessions without an environment; with one, the environment scores."""


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None


def _err(exc: GatewayError | RequestError) -> JSONResponse:
    if isinstance(exc, GatewayError):
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
            exc.status, "invalid_request_error")
        body = error_body(exc.message, kind, exc.param, exc.code)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(body, status_code=exc.status, headers=headers)
    kind = "not_found_error" if exc.status == 404 else exc.type
    return JSONResponse(error_body(exc.message, kind, exc.param, exc.code), status_code=exc.status)


async def _json_body(request: Request, model: type[BaseModel] | None = None, *, allow_empty: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip() and allow_empty:
        raw = b"{}"
    payload = parse_json_object(raw)  # RequestError (400 naming the field) for what no field may hold
    if model is None:
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        param, message = validation_message(exc)
        raise GatewayError(400, message, param=param) from None


class _Handlers:
    """The route bodies; shared by the `/v1` and the `/sessions/{id}/v1` mounts."""

    def __init__(self, gw: Gateway, srv: ChatServer | None, upstream: Any = None) -> None:
        self.gw, self.srv, self.upstream = gw, srv, upstream
        self.created = int(time.time())

    def session(self, request: Request, sid: str | None) -> Session:
        auth = request.headers.get("authorization")
        return self.gw.authenticate(auth) if sid is None else self.gw.session_for(sid, auth)

    async def chat(self, request: Request, sid: str | None) -> JSONResponse | StreamingResponse:
        session = self.session(request, sid)
        raw = await request.body()
        if self.upstream is not None:
            payload = parse_json_object(raw)
            return await forward_chat(self.gw, self.upstream, session, payload, _validated(payload))
        assert self.srv is not None
        # parsing, rendering, tokenizing and reconciling a long history take seconds: off the event loop
        req, prep, messages, plan = await run_in_threadpool(self._prepare_call, session, raw)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        engine = self.srv.engine
        if not req.stream:
            try:
                result = await engine.generate(prep.prompt_ids, prep.params, session_id=session.id)
            except Exception as exc:  # noqa: BLE001 — one failed call, not a failed gateway
                self._engine_error(session, exc)
                return engine_failure(exc, "messages")
            if result.finish_reason == "error":
                self._engine_error(session, RuntimeError("the engine reported an error"))
                return JSONResponse(error_body("the engine reported an error for this completion", "server_error",
                                               None, "engine_error"), status_code=500)
            reply = self._record(session, plan, prep, messages, result)
            return JSONResponse(_with_recorded_ids(chat_response(self.srv, prep, result, rid), reply))
        try:
            events = aiter(engine.stream(prep.prompt_ids, prep.params, session_id=session.id))
            first = await anext(events)
        except StopAsyncIteration:
            return JSONResponse(error_body("engine stream ended without a result", "server_error", None,
                                           "engine_error"), status_code=500)
        except Exception as exc:  # noqa: BLE001
            self._engine_error(session, exc)
            return engine_failure(exc, "messages")
        if isinstance(first, GenerationResult):
            self._record(session, plan, prep, messages, first)
        recorded = self._recording(session, plan, prep, messages, events)
        return StreamingResponse(stream_body(self.srv, prep, recorded, first, rid), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _prepare_call(self, session: Session, raw: bytes) -> tuple[ChatCompletionRequest, PreparedRequest, list[Message],
                                                                    Plan]:
        """Body -> validated request -> prompt ids reconciled with the session's earlier calls."""
        req = _validated(parse_json_object(raw))
        prep = prepare_request(self.srv, req)
        tools = prep.tools if prep.tools_enabled else []
        received = to_messages(req.messages, self.srv.think_start, self.srv.think_end)
        reconciled = session.reconcile(received, tools, restore=self.gw.restore_reasoning)
        messages = reconciled.messages
        if messages != received:  # the render changed: the full-render ids must follow
            prep.prompt_ids = encode_segments(self.srv.engine.tokenizer, self.gw.fmt.render(messages, tools)).ids
            if req.max_tokens is None and req.max_completion_tokens is None:
                prep.params.max_tokens = max(1, self.srv.engine.max_context - len(prep.prompt_ids))
        plan = self._plan(session, prep, reconciled)
        plan.restored = reconciled.restored
        plan.input_key = history_key(messages, tools)
        return req, prep, messages, plan

    def _plan(self, session: Session, prep: PreparedRequest, reconciled: Reconciled) -> Plan:
        """Reconcile with the session's earlier calls; the engine then gets the plan's ids."""
        tools = prep.tools if prep.tools_enabled else []
        fmt = self.gw.fmt
        text = segments_text(fmt.render(reconciled.messages, tools, add_generation_prompt=True))
        text, echoed = session.echo_text(
            text, reconciled, lambda ms: segments_text(fmt.render(ms, tools, add_generation_prompt=False)),
            fmt.end_of_message)
        tok = self.srv.engine.tokenizer
        plan = session.plan(text, prep.prompt_ids, lambda s: tok.encode(s, add_special_tokens=False))
        plan.echoed = echoed
        if plan.prompt_ids != prep.prompt_ids:
            limit = self.srv.engine.max_context
            if len(plan.prompt_ids) >= limit:
                raise RequestError(f"the prompt has {len(plan.prompt_ids)} tokens but the model's context limit is "
                                   f"{limit} tokens", param="messages", code="context_length_exceeded")
            if prep.req.max_tokens is None and prep.req.max_completion_tokens is None:
                prep.params.max_tokens = limit - len(plan.prompt_ids)
            prep.prompt_ids = plan.prompt_ids
        return plan

    async def _recording(self, session: Session, plan: Plan, prep: PreparedRequest, messages: list[Message],
                         events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """Pass the engine's stream through; record the call when its final result goes by."""
        try:
            async for event in events:
                if isinstance(event, GenerationResult) and event.finish_reason != "error":
                    self._record(session, plan, prep, messages, event)
                yield event
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    def _record(self, session: Session, plan: Plan, prep: PreparedRequest, messages: list[Message],
                result: GenerationResult) -> Message | None:
        """Record the call; returns the reply as recorded (None when the session already ended)."""
        if session.ended:  # the session was ended while this call ran: its trajectory is already stored
            log.warning("call finished after session %s ended; not recorded", session.id)
            self.gw.counters["late_calls"] = self.gw.counters.get("late_calls", 0) + 1
            return None
        tok = self.srv.engine.tokenizer
        raw = tok.decode(result.completion_ids, skip_special_tokens=False)
        text = completion_text(self.srv, prep, result.completion_ids)
        parse_error = None
        try:
            reply: Message | None = self.gw.fmt.parse(text, prep.tools if prep.tools_enabled else []).to_message()
        except (ParseError, ValueError) as exc:
            parse_error = str(exc)
            reply = Message(role="assistant", content=text)
        session.record(plan, result, raw, messages, reply, parse_error)
        self.gw.counters["calls"] += 1
        return reply

    def _engine_error(self, session: Session, exc: Exception) -> None:
        session.trajectory.errors.append(Failure(boundary=Boundary.ENGINE, message=f"{type(exc).__name__}: {exc}",
                                                 turn=len(session.trajectory.calls)))

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.gw.model_name, "object": "model", "created": self.created,
                                             "owned_by": "forgerl", "max_model_len": self.gw.engine.max_context}]}

    def task(self, request: Request, sid: str | None) -> dict[str, Any]:
        session = self.session(request, sid)
        return {"session_id": session.id, "model": self.gw.model_name,
                "messages": [_message_json(m) for m in session.opening],
                "tools": [t.to_openai() for t in session.tools]}

    async def tool(self, request: Request, sid: str | None) -> dict[str, Any]:
        session = self.session(request, sid)
        body: ToolCallIn = await _json_body(request, ToolCallIn)
        args = body.arguments
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise GatewayError(400, f"'arguments' is a string that is not JSON: {exc}", param="arguments") from None
            if not isinstance(args, dict):
                raise GatewayError(400, "'arguments' must be a JSON object", param="arguments")
        content, is_error = await self.gw.call_tool(session, body.name, args, body.id)
        return {"content": content, "is_error": is_error, "done": bool(session.env is not None and session.env.done)}


def _with_recorded_ids(body: dict[str, Any], reply: Message | None) -> dict[str, Any]:
    """The response with the tool-call ids the session recorded, so a client that keeps them tells
    apart two equal replies when it sends them back (Session.reconcile)."""
    calls = body["choices"][0]["message"].get("tool_calls") or []
    if reply is not None and len(calls) == len(reply.tool_calls):
        for call, recorded in zip(calls, reply.tool_calls, strict=True):
            if call["function"]["name"] == recorded.name:
                call["id"] = recorded.id
    return body


def _validated(payload: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        param, message = validation_message(exc)
        raise GatewayError(400, message, param=param) from None


def _message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.reasoning is not None:
        out["reasoning_content"] = m.reasoning
    if m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def create_gateway_app(gateway: Gateway, *, public_url: str | None = None,
                       max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The HTTP app over `gateway`. `public_url` is the base advertised in new sessions (default: the
    URL the admin request came in on). Request bodies over `max_body_bytes` get a 413."""
    if isinstance(gateway.engine, Upstream):  # a remote server renders and samples
        h = _Handlers(gateway, None, gateway.engine)
    else:
        h = _Handlers(gateway, ChatServer(gateway.engine, gateway.fmt, gateway.model_name))
    app = FastAPI(title="forgerl gateway", description="Recording OpenAI-compatible gateway for black-box agents")
    app.state.gateway = gateway
    install_body_limit(app, max_body_bytes)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return _err(exc)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _err(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {exc.detail}", kind),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": gateway.model_name, "policy_version": gateway.engine.policy_version,
                "live_sessions": len(gateway.sessions), **gateway.counters}

    for prefix in ("/v1", "/sessions/{sid}/v1"):
        _mount_openai(app, h, prefix)

    @app.post("/sessions")
    async def open_session(request: Request) -> dict[str, Any]:
        gateway.check_admin(request.headers.get("authorization"))
        body: OpenSessionIn = await _json_body(request, OpenSessionIn, allow_empty=True)
        await gateway.expire()
        opened = gateway.open_session(family=body.family, seed=body.seed, difficulty=body.difficulty, task=body.task,
                                      group_id=body.group_id, metadata=body.metadata, ttl_s=body.ttl_s)
        s = opened.session
        root = (public_url or str(request.base_url)).rstrip("/")
        return {"session_id": s.id, "api_key": opened.api_key, "base_url": f"{root}/sessions/{s.id}/v1",
                "model": gateway.model_name, "expires_at": s.expires_at, "task_id": s.trajectory.task_id,
                "messages": [_message_json(m) for m in s.opening], "tools": [t.to_openai() for t in s.tools]}

    @app.get("/sessions")
    async def list_sessions(request: Request) -> dict[str, Any]:
        gateway.check_admin(request.headers.get("authorization"))
        return {"sessions": [s.summary() for s in gateway.sessions.values()]}

    @app.get("/sessions/{sid}")
    async def get_session(sid: str, request: Request) -> dict[str, Any]:
        return gateway.session_for(sid, request.headers.get("authorization"), admin_ok=True).summary()

    @app.post("/sessions/{sid}/end")
    async def end_session(sid: str, request: Request) -> dict[str, Any]:
        session = gateway.session_for(sid, request.headers.get("authorization"), admin_ok=True)
        body: EndSessionIn = await _json_body(request, EndSessionIn, allow_empty=True)
        if body.reward is not None and session.env is not None:
            raise GatewayError(400, "this session's environment scores it; do not send a reward", param="reward")
        traj = await gateway.end_session(session, status=TrajectoryStatus(body.status), reason=body.reason,
                                         reward=body.reward)
        return {"session_id": sid, "trajectory_id": traj.id, "status": traj.status.value, "reward": traj.reward,
                "reward_breakdown": traj.reward_breakdown, "calls": len(traj.calls), "branches": session.branches,
                "stored": gateway.store is not None}

    @app.get("/sessions/{sid}/trajectory")
    async def get_trajectory(sid: str, request: Request) -> JSONResponse:
        gateway.check_admin(request.headers.get("authorization"))
        traj = gateway.finished.get(sid)
        if traj is None:
            raise GatewayError(404, f"no finished session {sid!r} (end it first)", code="session_not_found")
        return JSONResponse(json.loads(traj.model_dump_json()))

    return app


def _mount_openai(app: FastAPI, h: _Handlers, prefix: str) -> None:
    """The session-scoped OpenAI routes under `prefix` (with or without a `{sid}` path parameter)."""
    scoped = "{sid}" in prefix

    def sid_of(request: Request) -> str | None:
        return request.path_params.get("sid") if scoped else None

    async def chat(request: Request) -> Any:
        return await h.chat(request, sid_of(request))

    async def models(request: Request) -> dict[str, Any]:
        if scoped:
            h.session(request, sid_of(request))
        return h.models()

    async def task(request: Request) -> dict[str, Any]:
        return h.task(request, sid_of(request))

    async def tool(request: Request) -> dict[str, Any]:
        return await h.tool(request, sid_of(request))

    app.add_api_route(f"{prefix}/chat/completions", chat, methods=["POST"], response_model=None)
    app.add_api_route(f"{prefix}/models", models, methods=["GET"])
    app.add_api_route(f"{prefix}/task", task, methods=["GET"])
    app.add_api_route(f"{prefix}/tools/call", tool, methods=["POST"])
