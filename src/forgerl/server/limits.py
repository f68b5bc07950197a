"""What the HTTP servers (`forgerl serve` and the gateway) accept before any work is done.

Why: request bodies are hostile input. Without a cap, a 24 MB body was read whole, parsed and
tokenized on the event loop (`/health` stalled 20 s, 2 GB of memory stayed allocated); Python's
`json` accepts `NaN`/`Infinity`, numbers of any size, lone UTF-16 surrogates (`"\\ud800"`) and
nesting until the interpreter's recursion limit, each of which later crashed deep inside
rendering, sampling or response encoding as a 500. Here:

* `BodySizeLimit` (ASGI middleware) answers 413 for a declared `Content-Length` over the cap
  before reading a byte, and stops a chunked body as soon as the bytes read pass the cap, so no
  more than the cap is ever held.
* `parse_json_object` parses a body and rejects what no field may hold (non-finite numbers,
  integers outside 64 bits, lone surrogates, nesting deeper than `MAX_JSON_DEPTH`) with a
  `RequestError` whose `param` names the field (`messages[0].content`), as OpenAI spells it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from forgerl.server.convert import RequestError
from forgerl.server.protocol import error_body

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""8 MiB: a 128k-token conversation with tools is about 1 MB of JSON; room for long agent histories."""

MAX_JSON_DEPTH = 64
"""Deeper than any chat request or tool schema needs; shallow enough for every recursive consumer."""

MAX_STOP_STRINGS = 16
"""Each stop string is searched for after every sampled token: thousands of them would stall the engine."""

_INT64 = (-(2**63), 2**63 - 1)


class BodyTooLarge(Exception):
    """Raised inside the app's `receive` when a streamed body passes the cap."""


def too_large_message(limit: int) -> str:
    return (f"the request body is larger than this server's limit of {limit} bytes; send a shorter "
            "conversation (or start the server with a larger --max-body-mb)")


class BodySizeLimit:
    """ASGI middleware: HTTP request bodies over `max_bytes` get a 413 in OpenAI's error shape.

    A declared `Content-Length` over the cap is refused before the body is handed to the app. A
    body without one (chunked) is counted as it arrives; the app's `receive` raises `BodyTooLarge`
    once the count passes the cap, which the apps turn into the same 413 (`install_body_limit`).

    Nothing over the cap is kept, but up to another `max_bytes` is read and discarded before the
    answer ("lingering close"): a server that closes a socket with unread data makes the kernel
    reset the connection, and the client (which sends its whole body before it reads) would see
    a reset instead of the 413. Beyond that budget the connection is simply closed."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if declared <= 2 * self.max_bytes:
                await _discard_body(receive, self.max_bytes * 2)
            await _send_413(send, self.max_bytes)
            return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body", False):
                        await _discard_body(receive, self.max_bytes)
                    raise BodyTooLarge(too_large_message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)


def install_body_limit(app: Any, max_bytes: int) -> None:
    """Cap request bodies of a FastAPI `app` at `max_bytes` (413 with OpenAI's error envelope)."""
    from fastapi.responses import JSONResponse

    async def too_large(request: Any, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(error_body(str(exc), "invalid_request_error", None, "request_too_large"),
                            status_code=413, headers={"Connection": "close"})

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)


async def _discard_body(receive: Any, budget: int) -> None:
    """Read and drop the rest of a refused body, up to `budget` bytes (see BodySizeLimit)."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11) rejects a malformed one itself
    return None


async def _send_413(send: Any, limit: int) -> None:
    body = json.dumps(error_body(too_large_message(limit), "invalid_request_error", None,
                                 "request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object whose every value is safe to use; RequestError (400) naming the
    field otherwise."""
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise RequestError(f"the request body is nested too deeply (the limit is {MAX_JSON_DEPTH} levels)",
                           code="invalid_json") from None
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body is not valid UTF-8 JSON: {exc}", code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal of thousands of digits
        raise RequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(payload).__name__}")
    check_json_values(payload)
    return payload


def check_json_values(payload: Any) -> None:
    """Walk the parsed body (iteratively: a deep one must not blow the stack here either)."""
    stack: list[tuple[Any, str, int]] = [(payload, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= MAX_JSON_DEPTH:
                _refuse(_top_field(path), f"is nested more than {MAX_JSON_DEPTH} levels deep")
            for key, item in value.items():
                _check_text(key, path or "body", "a key")
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            if depth >= MAX_JSON_DEPTH:
                _refuse(_top_field(path), f"is nested more than {MAX_JSON_DEPTH} levels deep")
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path, "text")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                _refuse(path, "is an integer outside the 64-bit range")
        elif isinstance(value, float) and not math.isfinite(value):
            _refuse(path, f"is {value!r}: NaN and Infinity are not valid JSON numbers; send a finite number")


def check_stops(stop: str | list[str] | None) -> list[str]:
    """The request's stop strings as a list: none empty, at most MAX_STOP_STRINGS of them."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if any(s == "" for s in stops):
        raise RequestError("stop strings must not be empty", param="stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise RequestError(f"at most {MAX_STOP_STRINGS} stop strings are supported, got {len(stops)}", param="stop")
    return stops


def _check_text(text: str, path: str, what: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _refuse(path, f"holds {what} with a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); "
                      "send valid Unicode")


def _top_field(path: str) -> str:
    """'metadata[0][0]...' -> 'metadata': a path 64 levels deep helps nobody."""
    for i, ch in enumerate(path):
        if ch in ".[":
            return path[:i]
    return path


def _refuse(path: str, problem: str) -> None:
    where = path or "body"
    raise RequestError(f"invalid field {where!r}: it {problem}", param=path or None)
