"""The chat-completion request/response path, shared by the server (server/app.py) and the
gateway (gateway/app.py): one implementation, so a black-box agent sees the same API through both.

Why a module of its own: the gateway records every call it serves, so it needs the pieces in
between (the validated request, the prompt ids, the parsed completion) and not only a finished
HTTP response. These names are public; nothing outside forgerl.server imports a private one
(tests/test_architecture.py).

The steps, in request order:
* `parse_request`: body bytes -> a validated `ChatCompletionRequest` (RequestError naming the
  field otherwise; `validation_message` words a pydantic error the same way for other models).
* `prepare_request`: every check the OpenAI surface needs, then render + encode the prompt ->
  `PreparedRequest` (prompt ids, sampling params, stops). `ChatServer` holds what derives once
  from the engine and chat format (stop tokens, think markers, byte-level token bytes).
* `completion_text` / `parse_completion`: decode the sampled ids and parse them with the format;
  output the format cannot parse is returned as raw text, never a server error.
* `chat_response` / `stream_body`: the OpenAI response body, or its SSE chunks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from forgerl.chat.base import ChatFormat, ParsedCompletion, encode_segments
from forgerl.engine.base import Engine, GenerationResult, SamplingParams, TokenEvent
from forgerl.errors import ConfigError, ParseError
from forgerl.server.convert import RequestError, to_messages, to_tool_specs
from forgerl.server.limits import check_stops, parse_json_object
from forgerl.server.protocol import (
    ChatCompletionRequest,
    NamedToolChoice,
    aclose_quietly,
    error_body,
    sse,
)
from forgerl.server.streaming import Channel, DeltaSplitter, IncrementalDecoder, cut_at_markers
from forgerl.types import ToolCall, ToolSpec

log = logging.getLogger(__name__)

__all__ = [
    "ChatServer", "PreparedRequest", "chat_response", "completion_text", "finish_reason_of", "forgerl_extension",
    "parse_and_prepare", "parse_completion", "parse_request", "prepare_request", "stream_body", "tool_calls_json",
    "usage_json", "validation_message",
]


# pydantic puts the union member it tried into `loc` ('str', "literal['auto',...]", a class name);
# those are not fields, so they are left out of the `param` the client sees.
_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "bytes"}


def _is_type_tag(part: Any) -> bool:
    return isinstance(part, str) and (not part.isidentifier() or part in _TYPE_TAGS or part[:1].isupper())


def _loc_to_param(loc: tuple[Any, ...]) -> str:
    """('body', 'messages', 0, 'role') -> 'messages[0].role' (the OpenAI `param` spelling)."""
    out = ""
    for part in loc:
        if part == "body" or _is_type_tag(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_message(exc: ValidationError) -> tuple[str, str]:
    """(param, message) for the first invalid field, merging the alternatives a union reported."""
    errors = exc.errors()
    param = _loc_to_param(tuple(errors[0]["loc"]))
    msgs: list[str] = []
    for e in errors:
        if _loc_to_param(tuple(e["loc"])) == param and e["msg"] not in msgs:
            msgs.append(e["msg"])
    return param, f"invalid field {param!r}: {'; or '.join(msgs)}"


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE (GPT-2 style) spells each byte as one printable character; this inverts it."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_UNICODE_TO_BYTE = _byte_level_alphabet()


class ChatServer:
    """Per-app state: the engine, the chat format and what derives from them once."""

    def __init__(self, engine: Engine, fmt: ChatFormat, served_model_name: str | None) -> None:
        self.engine = engine
        self.fmt = fmt
        self.model_name = served_model_name or engine.model_name
        self.created = int(time.time())
        tok = engine.tokenizer
        self.think_start: str = getattr(fmt, "think_start", None) or ""
        self.think_end: str = getattr(fmt, "think_end", None) or ""
        self.tool_call_start: str = getattr(fmt, "tool_call_start", None) or ""
        self.prompt_opens_think: bool = bool(getattr(fmt, "prompt_opens_think", False))
        # Whitespace the format's parse drops around the think markers (TurnFormat attributes);
        # streaming drops the same so streamed deltas match the non-streamed message.
        self.think_pad: str = getattr(fmt, "think_pad", "") or ""
        self.think_sep: str = getattr(fmt, "think_sep", "") or ""
        # The engine stops on the end-of-message token; when it is not one token (a tokenizer not
        # prepared for the format) it stops on the marker as a stop string instead.
        self.stop_token_ids: list[int] = []
        self.extra_stop: list[str] = []
        eom = fmt.end_of_message
        eom_ids = tok.encode(eom, add_special_tokens=False)
        if len(eom_ids) == 1:
            self.stop_token_ids.append(eom_ids[0])
        else:
            self.extra_stop.append(eom)
        eos = getattr(tok, "eos_token_id", None)
        if isinstance(eos, int) and eos not in self.stop_token_ids:
            self.stop_token_ids.append(eos)
        eos_text = getattr(tok, "eos_token", None)
        self.end_markers = [m for m in (eom, eos_text if isinstance(eos_text, str) else None) if m]
        backend = getattr(tok, "backend_tokenizer", None)
        self._byte_level = type(getattr(backend, "decoder", None)).__name__ == "ByteLevel"
        self._added_ids = set(tok.get_added_vocab().values()) if hasattr(tok, "get_added_vocab") else set()

    def decode(self, ids: list[int]) -> str:
        return self.engine.tokenizer.decode(ids, skip_special_tokens=False)

    def token_logprobs(self, ids: list[int], logprobs: list[float]) -> list[dict[str, Any]]:
        out = []
        for tid, lp in zip(ids, logprobs, strict=True):
            text = self.decode([tid])
            raw = self._byte_level_bytes(tid) if self._byte_level else None
            out.append({"token": text, "logprob": lp, "bytes": list(raw if raw is not None else text.encode("utf-8")),
                        "top_logprobs": []})
        return out

    def _byte_level_bytes(self, tid: int) -> bytes | None:
        """The exact bytes of a byte-level BPE token, also when it holds half a UTF-8 character
        (its decoded text is then U+FFFD, which is why OpenAI's `bytes` field exists)."""
        tok = self.engine.tokenizer
        if tid in self._added_ids:
            return None
        piece = tok.convert_ids_to_tokens(tid)
        try:
            return bytes(_UNICODE_TO_BYTE[ch] for ch in piece)
        except (KeyError, TypeError):
            return None


@dataclass
class PreparedRequest:
    """A validated request: prompt ids, sampling params and what the response needs to know."""

    req: ChatCompletionRequest
    tools: list[ToolSpec]
    prompt_ids: list[int]
    params: SamplingParams
    stops: list[str]
    tools_enabled: bool


def prepare_request(srv: ChatServer, req: ChatCompletionRequest) -> PreparedRequest:
    """All request checks and the render; raises RequestError with the field at fault."""
    if req.model is not None and req.model != srv.model_name:
        raise RequestError(
            f"model {req.model!r} does not exist; available models: {srv.model_name!r}",
            param="model", status=404, code="model_not_found",
        )
    if req.n not in (None, 1):
        raise RequestError(f"only n=1 is supported, got n={req.n}", param="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise RequestError(f"{name} is not supported (must be 0 or absent)", param=name)
    if req.logit_bias:
        raise RequestError("logit_bias is not supported", param="logit_bias")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise RequestError("only response_format type 'text' is supported", param="response_format")
    if req.top_logprobs:
        raise RequestError("top_logprobs is not supported (only the sampled token's logprob)", param="top_logprobs")
    if req.tool_choice == "required" or isinstance(req.tool_choice, NamedToolChoice):
        raise RequestError(
            "tool_choice 'required' or a named function cannot be enforced by this server (no constrained "
            "decoding); use 'auto' or 'none'", param="tool_choice",
        )
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if max_tokens is not None and max_tokens < 1:
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        raise RequestError(f"{param} must be at least 1, got {max_tokens}", param=param)

    tools = to_tool_specs(req.tools)
    tools_enabled = req.tool_choice != "none"
    messages = to_messages(req.messages, srv.think_start, srv.think_end)
    try:
        segments = srv.fmt.render(messages, tools if tools_enabled else [], add_generation_prompt=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise RequestError(f"the conversation cannot be rendered in this chat format: {exc}", param="messages") from None
    prompt_ids = encode_segments(srv.engine.tokenizer, segments).ids
    limit = srv.engine.max_context
    if len(prompt_ids) >= limit:
        raise RequestError(
            f"the prompt has {len(prompt_ids)} tokens but the model's context limit is {limit} tokens "
            "(at least one token must be left to generate)",
            param="messages", code="context_length_exceeded",
        )
    stops = check_stops(req.stop)
    params = SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else limit - len(prompt_ids),
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        stop=stops + srv.extra_stop,
        stop_token_ids=list(srv.stop_token_ids),
        seed=req.seed,
    )
    try:
        params.validate()
    except ConfigError as exc:
        raise RequestError(str(exc), param=str(exc).split()[0]) from None
    return PreparedRequest(req, tools, prompt_ids, params, stops, tools_enabled)


def parse_request(raw: bytes) -> ChatCompletionRequest:
    """The body as a validated request; RequestError naming the field otherwise."""
    payload = parse_json_object(raw)
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        param, message = validation_message(exc)
        raise RequestError(message, param=param) from None


def parse_and_prepare(srv: ChatServer, raw: bytes) -> PreparedRequest:
    """Everything between the raw body and the engine call (run in a worker thread)."""
    return prepare_request(srv, parse_request(raw))


def completion_text(srv: ChatServer, prep: PreparedRequest, ids: list[int]) -> str:
    """Decoded completion with the end-of-message marker and stop strings (and what follows) removed."""
    return cut_at_markers(srv.decode(ids), [*srv.end_markers, *prep.stops])


def parse_completion(srv: ChatServer, prep: PreparedRequest, text: str) -> ParsedCompletion | None:
    """The format's parse, or None when the completion does not follow the format."""
    try:
        parsed = srv.fmt.parse(text, prep.tools if prep.tools_enabled else [])
    except ParseError as exc:
        log.info("completion did not parse, returning raw text: %s", exc)
        return None
    except ValueError as exc:  # a format should raise only ParseError; a bug there must not 500 the request
        log.warning("chat format %s raised %r while parsing; returning raw text", type(srv.fmt).__name__, exc)
        return None
    if parsed.tool_calls and not prep.tools_enabled:
        return None  # tool_choice "none": a call the client did not allow is returned as text
    return parsed


def finish_reason_of(result: GenerationResult, parsed: ParsedCompletion | None) -> str:
    if parsed is not None and parsed.tool_calls:
        return "tool_calls"
    return {"stop": "stop", "length": "length"}.get(result.finish_reason, result.finish_reason)


def tool_calls_json(calls: list[ToolCall], with_index: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        item: dict[str, Any] = {
            "id": c.id, "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        if with_index:
            item = {"index": i, **item}
        out.append(item)
    return out


def usage_json(prep: PreparedRequest, result: GenerationResult) -> dict[str, Any]:
    n_prompt, n_completion = len(prep.prompt_ids), len(result.completion_ids)
    return {
        "prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
    }


def forgerl_extension(prep: PreparedRequest, result: GenerationResult) -> dict[str, Any]:
    return {
        "prompt_ids": prep.prompt_ids, "completion_ids": result.completion_ids,
        "completion_logprobs": result.logprobs, "policy_version": result.policy_version,
    }


def chat_response(srv: ChatServer, prep: PreparedRequest, result: GenerationResult, rid: str) -> dict[str, Any]:
    text = completion_text(srv, prep, result.completion_ids)
    parsed = parse_completion(srv, prep, text)
    message: dict[str, Any] = {"role": "assistant"}
    if parsed is None:
        message.update(content=text, reasoning_content=None, tool_calls=None)
    else:
        message.update(
            content=parsed.content if (parsed.content or not parsed.tool_calls) else None,
            reasoning_content=parsed.reasoning,
            tool_calls=tool_calls_json(parsed.tool_calls) or None,
        )
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason_of(result, parsed),
                              "logprobs": None}
    if prep.req.logprobs:
        choice["logprobs"] = {"content": srv.token_logprobs(result.completion_ids, result.logprobs)}
    body: dict[str, Any] = {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": srv.model_name,
        "choices": [choice], "usage": usage_json(prep, result),
    }
    if prep.req.return_token_ids:
        choice["token_ids"] = result.completion_ids
        body["prompt_token_ids"] = prep.prompt_ids
        body["forgerl"] = forgerl_extension(prep, result)
    return body


async def stream_body(
    srv: ChatServer, prep: PreparedRequest, events: AsyncIterator[TokenEvent | GenerationResult],
    first: TokenEvent | GenerationResult, rid: str, release: Any = None,
) -> AsyncIterator[bytes]:
    """SSE chunks (then `release()`, the request's admission slot, however the stream ends)."""
    try:
        async for part in _stream_chunks(srv, prep, events, first, rid):
            yield part
    finally:
        if release is not None:
            release()


async def _stream_chunks(
    srv: ChatServer, prep: PreparedRequest, events: AsyncIterator[TokenEvent | GenerationResult],
    first: TokenEvent | GenerationResult, rid: str,
) -> AsyncIterator[bytes]:
    """SSE chunks: role, reasoning/content deltas, tool calls at the end, finish, usage, [DONE]."""
    created = int(time.time())
    include_usage = bool(prep.req.stream_options and prep.req.stream_options.include_usage)
    want_lp = prep.req.logprobs

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: list[dict[str, Any]] | None = None,
              choice_extra: dict[str, Any] | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": {"content": logprobs} if want_lp and logprobs is not None else None,
                  "finish_reason": finish, **(choice_extra or {})}
        body: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created,
                                "model": srv.model_name, "choices": [choice], **extra}
        if include_usage:
            body.setdefault("usage", None)
        return sse(body)

    splitter = DeltaSplitter(
        think_start=srv.think_start or None, think_end=srv.think_end or None,
        tool_call_start=srv.tool_call_start or None, stop_markers=[*srv.end_markers, *prep.stops],
        in_think=srv.prompt_opens_think, think_pad=srv.think_pad, think_sep=srv.think_sep,
    )
    first_extra = {"prompt_token_ids": prep.prompt_ids} if prep.req.return_token_ids else {}
    yield chunk({"role": "assistant", "content": ""}, **first_extra)
    decoder = IncrementalDecoder(srv.decode)
    pending_lp: list[dict[str, Any]] = []
    result: GenerationResult | None = None
    try:
        event: TokenEvent | GenerationResult | None = first
        while event is not None:
            if isinstance(event, GenerationResult):
                result = event
                break
            decoder.push(event.token_id)
            if want_lp:
                pending_lp.extend(srv.token_logprobs([event.token_id], [event.logprob]))
            for channel, text in splitter.feed(decoder.text):
                yield chunk(_delta(channel, text), logprobs=pending_lp)
                pending_lp = []
            event = await anext(events, None)
    except Exception as exc:  # noqa: BLE001 — a failing engine ends this stream, not the server
        log.exception("engine failed during a streamed completion")
        yield sse(error_body(f"engine error: {exc}", "server_error", None, "engine_error"))
        yield sse("[DONE]")
        return
    finally:
        await aclose_quietly(events)
    if result is None or result.finish_reason == "error":
        why = "engine stream ended without a result" if result is None else "the engine reported an error"
        yield sse(error_body(why, "server_error", None, "engine_error"))
        yield sse("[DONE]")
        return
    # The final ids are authoritative (an engine may not have streamed its last tokens as events).
    text = completion_text(srv, prep, result.completion_ids)
    parsed = parse_completion(srv, prep, text)
    for channel, piece in [*splitter.feed(text), *splitter.finish(parsed)]:
        yield chunk(_delta(channel, piece), logprobs=pending_lp)
        pending_lp = []
    if parsed is not None and parsed.tool_calls:
        yield chunk({"tool_calls": tool_calls_json(parsed.tool_calls, with_index=True)}, logprobs=pending_lp)
        pending_lp = []
    final_extra: dict[str, Any] = {}
    choice_extra: dict[str, Any] = {}
    if prep.req.return_token_ids:
        final_extra["forgerl"] = forgerl_extension(prep, result)
        choice_extra["token_ids"] = result.completion_ids
    yield chunk({}, finish_reason_of(result, parsed), logprobs=pending_lp, choice_extra=choice_extra, **final_extra)
    if include_usage:
        yield sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": srv.model_name,
                    "choices": [], "usage": usage_json(prep, result)})
    yield sse("[DONE]")


def _delta(channel: Channel, text: str) -> dict[str, Any]:
    return {"reasoning_content": text} if channel == "reasoning" else {"content": text}
