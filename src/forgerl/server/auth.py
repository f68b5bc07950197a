"""API-key protection of the OpenAI routes (`forgerl serve --api-key`, or FORGERL_API_KEY).

Why: a served policy is compute and, with `return_token_ids`, its exact token ids and logprobs;
anyone who can reach the port can use both. With a key set, every request under `/v1` must carry
`Authorization: Bearer KEY`, or it is answered 401 in OpenAI's error envelope (what the `openai`
client raises as AuthenticationError) before its body is read. `/health` stays open for probes,
and the admin routes keep their own token (admin.py).

The comparison is between SHA-256 digests with `hmac.compare_digest`: constant time, and equal
lengths whatever the client sends, so neither timing nor length leaks the key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Any

from forgerl.server.protocol import error_body

API_KEY_ENV = "FORGERL_API_KEY"
PROTECTED_PREFIX = "/v1"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def bearer_matches(header: str | None, key: str) -> bool:
    """Whether an Authorization header is exactly `Bearer KEY` (constant-time in the key)."""
    return hmac.compare_digest(_digest(header or ""), _digest(f"Bearer {key}"))


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning to print when `serve` binds beyond loopback without an API key, else None."""
    if api_key or is_loopback(host):
        return None
    return (f"WARNING: serving on {host} without an API key: anyone who can reach this port can sample from the "
            f"model and read its token ids and logprobs. Set --api-key (or {API_KEY_ENV}), or bind 127.0.0.1.")


class ApiKeyMiddleware:
    """Pure ASGI middleware (streaming responses pass through untouched) refusing `/v1` requests
    without the bearer key."""

    def __init__(self, app: Any, api_key: str) -> None:
        if not api_key:
            raise ValueError("ApiKeyMiddleware needs a non-empty api_key")
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _protected(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if bearer_matches(header, self.api_key):
            await self.app(scope, receive, send)
            return
        why = ("missing credential: send 'Authorization: Bearer <api key>' (the key `forgerl serve` was started with)"
               if header is None else "invalid API key: it does not match the key `forgerl serve` was started with")
        body = json.dumps(error_body(why, "authentication_error", None, "invalid_api_key")).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


__all__ = ["API_KEY_ENV", "ApiKeyMiddleware", "bearer_matches", "exposure_warning", "is_loopback"]
