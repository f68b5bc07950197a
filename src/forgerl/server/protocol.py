"""Wire models of the OpenAI chat-completions API, as far as forgerl's server speaks it.

Requests are validated with pydantic so that a bad field becomes a 400 that names the field,
not a crash deep inside rendering. Unknown request fields are *ignored* (clients such as the
`openai` package and agent frameworks send many optional fields); fields that would change the
result and that we cannot honour (penalties, logit_bias, n > 1, ...) are rejected in `app.py`
rather than silently dropped. Responses are plain dicts built in `app.py`: the OpenAI schema has
many optional fields and a dict keeps exactly what we send visible.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forgerl.errors import ConfigError, ContextLengthError

log = logging.getLogger(__name__)


class _Lenient(BaseModel):
    """Ignore fields we do not know: OpenAI keeps adding optional ones."""

    model_config = ConfigDict(extra="ignore")


class FunctionCallIn(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"  # OpenAI sends a JSON string; tolerate an object


class ToolCallIn(_Lenient):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessageIn(_Lenient):
    """One request message. `content` may be a string, a list of content parts, or null."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # newer vLLM spelling of reasoning_content


class FunctionDefIn(_Lenient):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(_Lenient):
    type: Literal["function"]
    function: FunctionDefIn


class NamedToolChoiceFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedToolChoiceFunction


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = None
    messages: list[ChatMessageIn] = Field(min_length=1)
    tools: list[ToolIn] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # extension (vLLM has it too)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    return_token_ids: bool = False  # forgerl extension: exact ids + logprobs + policy version


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope: clients (the `openai` package) read `error.message`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                   code: str | None = None) -> Any:
    """An OpenAI-style error as a JSON response (both completion routes answer errors this way)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def engine_failure(exc: Exception, prompt_param: str) -> Any:
    """The response to an engine error before any output: a prompt over the context limit or a bad
    setting is the caller's 400 (naming `prompt_param`), anything else a logged 500."""

    if isinstance(exc, ContextLengthError):
        return error_response(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, ConfigError):
        return error_response(400, str(exc))
    log.exception("engine failed", exc_info=exc)
    return error_response(500, f"engine error: {exc}", type_="server_error", code="engine_error")


def sse(obj: dict[str, Any] | str) -> bytes:
    """One server-sent event (`data: ...`), JSON unless it is the literal `[DONE]`."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


async def aclose_quietly(events: Any) -> None:
    """Close an engine's event stream; closing a broken stream must not mask the real error."""
    close = getattr(events, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # noqa: BLE001
            log.debug("error while closing the engine stream", exc_info=True)
