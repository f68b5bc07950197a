"""`POST /v1/completions` with token-id prompts: the route a trainer in another process drives.

Why it exists: the trainer needs token in, token out — the exact ids it will train on, their raw
logprobs and the policy version that sampled them (DESIGN contracts 1 and 6). The chat route
renders messages itself; this one takes the prompt as a list of token ids, as vLLM's
`/v1/completions` does, and answers in vLLM's shape (`choices[0].token_ids` with
`return_token_ids`, `logprobs.token_logprobs` with `logprobs: 0`). So one client class
(`forgerl.engine.remote.RemoteEngine`) drives both a `forgerl serve` process and a vLLM server.

What is honoured, and what is refused with a 400 rather than silently ignored:
* `prompt`: a list of token ids (or a string, tokenized without special tokens); one prompt only.
* `max_tokens` (default: the rest of the context), `temperature`, `top_p`, `top_k`, `seed`,
  `stop` strings, `stop_token_ids` (added to the engine's own end-of-message/EOS stops),
  `skip_special_tokens`, `include_stop_str_in_output`, `stream` (+ `stream_options.include_usage`).
* `logprobs`: 0 gives each sampled token's logprob — the raw model log-softmax, before
  temperature and truncation (SamplingParams); more than 0 (top alternatives) is refused.
* Neutral values of `min_p`, the penalties and `ignore_eos` are accepted (the VLLMEngine client
  sends them explicitly); anything that would change sampling in a way this engine cannot is a 400,
  as are `n`/`best_of` > 1, `echo`, `suffix` and `logit_bias`.

Every response carries the policy version that produced it: the `x-forgerl-policy-version`
header and `forgerl.policy_version` in the body (in the last chunk when streaming). Requests pass
the admission gate, so a weight push drains them first and a completion never mixes versions.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from forgerl.engine.base import Engine, GenerationResult, SamplingParams, TokenEvent
from forgerl.errors import ConfigError
from forgerl.server.admin import VERSION_HEADER, AdmissionGate
from forgerl.server.convert import RequestError
from forgerl.server.limits import check_stops, parse_json_object
from forgerl.server.protocol import (
    StreamOptions,
    aclose_quietly,
    engine_failure,
    error_body,
    error_response,
    sse,
)
from forgerl.server.streaming import IncrementalDecoder, cut_at_markers

log = logging.getLogger(__name__)


class CompletionRequest(BaseModel):
    """The fields of an OpenAI/vLLM completions request this server reads (others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: Any = None  # checked by hand: the messages for a batch or a bad id are specific
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    logprobs: int | None = None
    return_token_ids: bool = False
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    echo: bool = False
    n: int | None = None
    best_of: int | None = None
    suffix: str | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


@dataclass
class _Prepared:
    req: CompletionRequest
    prompt_ids: list[int]
    params: SamplingParams
    stops: list[str]


def _prompt_ids(req: CompletionRequest, tokenizer: Any) -> list[int]:
    prompt = req.prompt
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt, add_special_tokens=False))
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list):
        if len(prompt) != 1:
            raise RequestError(f"one prompt per request, got a batch of {len(prompt)}", param="prompt")
        prompt = prompt[0]
    if not isinstance(prompt, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        raise RequestError("prompt must be a list of token ids (integers) or a string", param="prompt")
    if not prompt:
        raise RequestError("prompt is empty: at least one token is needed", param="prompt")
    vocab = len(tokenizer)
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad:
        raise RequestError(f"prompt token id {bad[0]} is outside the tokenizer's vocabulary [0, {vocab})",
                           param="prompt")
    return list(prompt)


def _prepare(engine: Engine, model_name: str, req: CompletionRequest) -> _Prepared:
    """All request checks; raises RequestError naming the field at fault."""
    if req.model is not None and req.model != model_name:
        raise RequestError(f"model {req.model!r} does not exist; available models: {model_name!r}",
                           param="model", status=404, code="model_not_found")
    for name, neutral in (("min_p", 0.0), ("presence_penalty", 0.0), ("frequency_penalty", 0.0),
                          ("repetition_penalty", 1.0)):
        value = getattr(req, name)
        if value is not None and value != neutral:
            raise RequestError(f"{name}={value} is not supported (only the neutral {neutral})", param=name)
    for name in ("n", "best_of"):
        if getattr(req, name) not in (None, 1):
            raise RequestError(f"only {name}=1 is supported, got {getattr(req, name)}", param=name)
    if req.echo:
        raise RequestError("echo is not supported", param="echo")
    if req.suffix:
        raise RequestError("suffix is not supported", param="suffix")
    if req.logit_bias:
        raise RequestError("logit_bias is not supported", param="logit_bias")
    if req.ignore_eos:
        raise RequestError("ignore_eos is not supported: this engine always stops at its end-of-message/EOS ids",
                           param="ignore_eos")
    if req.logprobs is not None and req.logprobs != 0:
        raise RequestError(f"logprobs={req.logprobs} is not supported: use 0 (each sampled token's logprob; "
                           "no top alternatives)", param="logprobs")
    prompt_ids = _prompt_ids(req, engine.tokenizer)
    limit = engine.max_context
    if len(prompt_ids) >= limit:
        raise RequestError(f"the prompt has {len(prompt_ids)} tokens but the model's context limit is {limit} tokens "
                           "(at least one token must be left to generate)", param="prompt", code="context_length_exceeded")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise RequestError(f"max_tokens must be at least 1, got {req.max_tokens}", param="max_tokens")
    stops = check_stops(req.stop)
    if any(t < 0 for t in req.stop_token_ids or []):
        raise RequestError("stop_token_ids must be >= 0", param="stop_token_ids")
    params = SamplingParams(
        max_tokens=req.max_tokens if req.max_tokens is not None else limit - len(prompt_ids),
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=max(req.top_k or 0, 0),  # vLLM spells "off" as -1 or 0
        stop=stops, stop_token_ids=list(req.stop_token_ids or []), seed=req.seed)
    try:
        params.validate()
    except ConfigError as exc:
        raise RequestError(str(exc), param=str(exc).split()[0]) from None
    return _Prepared(req, prompt_ids, params, stops)


class _Texts:
    """Token texts, the completion text and the logprobs block, as the request asked for them."""

    def __init__(self, tokenizer: Any, prep: _Prepared) -> None:
        self.tokenizer, self.prep = tokenizer, prep

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.prep.req.skip_special_tokens)

    def final_text(self, result: GenerationResult) -> str:
        """The completion text; without include_stop_str_in_output the stop string or stop token
        (and anything after it) is left out, as vLLM does. The ids always include it."""
        ids = result.completion_ids
        keep = self.prep.req.include_stop_str_in_output
        if not keep and result.finish_reason == "stop" and isinstance(result.stop_reason, int) and ids:
            ids = ids[:-1]
        text = self.decode(ids)
        if not keep and isinstance(result.stop_reason, str):
            text = cut_at_markers(text, [result.stop_reason])
        return text

    def logprobs(self, ids: list[int], logprobs: list[float], offset: int) -> dict[str, Any] | None:
        if self.prep.req.logprobs is None:
            return None
        tokens = [self.tokenizer.decode([t], skip_special_tokens=False) for t in ids]
        offsets, pos = [], offset
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        return {"tokens": tokens, "token_logprobs": list(logprobs), "top_logprobs": [{} for _ in ids],
                "text_offset": offsets}


def _usage(prep: _Prepared, result: GenerationResult) -> dict[str, Any]:
    n_prompt, n_completion = len(prep.prompt_ids), len(result.completion_ids)
    return {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens}}


def _response(model_name: str, texts: _Texts, result: GenerationResult, rid: str) -> dict[str, Any]:
    prep = texts.prep
    choice: dict[str, Any] = {
        "index": 0, "text": texts.final_text(result),
        "logprobs": texts.logprobs(result.completion_ids, result.logprobs, 0),
        "finish_reason": result.finish_reason, "stop_reason": result.stop_reason,
    }
    if prep.req.return_token_ids:
        choice["token_ids"] = list(result.completion_ids)
        choice["prompt_token_ids"] = list(prep.prompt_ids)
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model_name,
            "choices": [choice], "usage": _usage(prep, result),
            "forgerl": {"policy_version": result.policy_version}}


async def _stream_chunks(model_name: str, texts: _Texts, events: AsyncIterator[TokenEvent | GenerationResult],
                         first: TokenEvent | GenerationResult, rid: str, release: Callable[[], None]) -> AsyncIterator[bytes]:
    """One chunk per sampled token (its id, logprob and the text that became safe to send), then a
    last chunk with any ids not streamed, the finish reason and the policy version; usage; [DONE].

    Text that could be the start of a stop string is held back until it is known not to be one
    (when the stop string is to be left out of the text)."""
    prep = texts.prep
    created = int(time.time())
    hold = 0 if prep.req.include_stop_str_in_output else max((len(s) for s in prep.stops), default=1) - 1
    decoder = IncrementalDecoder(texts.decode)
    sent_text, sent_ids = 0, 0
    result: GenerationResult | None = None

    def chunk(text: str, ids: list[int], lps: list[float], offset: int, **extra: Any) -> bytes:
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": texts.logprobs(ids, lps, offset),
                                  "finish_reason": extra.pop("finish_reason", None)}
        if "stop_reason" in extra:
            choice["stop_reason"] = extra.pop("stop_reason")
        if prep.req.return_token_ids:
            choice["token_ids"] = ids
        body = {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                "choices": [choice], **extra}
        return sse(body)

    try:
        event: TokenEvent | GenerationResult | None = first
        while event is not None:
            if isinstance(event, GenerationResult):
                result = event
                break
            decoder.push(event.token_id)
            visible = len(decoder.text) if not hold else len(cut_at_markers(decoder.text, prep.stops))
            safe = max(sent_text, min(visible, len(decoder.text) - hold))
            yield chunk(decoder.text[sent_text:safe], [event.token_id], [event.logprob], sent_text)
            sent_text, sent_ids = safe, sent_ids + 1
            event = await anext(events, None)
        if result is None or result.finish_reason in ("error", "abort"):
            why = "engine stream ended without a result" if result is None else "the engine reported an error"
            yield sse(error_body(why, "server_error", None, "engine_error"))
            yield sse("[DONE]")
            return
        final = texts.final_text(result)  # authoritative: an engine may not stream its last tokens
        rest_ids = result.completion_ids[sent_ids:]
        yield chunk(final[sent_text:], rest_ids, result.logprobs[sent_ids:], sent_text,
                    finish_reason=result.finish_reason, stop_reason=result.stop_reason,
                    forgerl={"policy_version": result.policy_version})
        if prep.req.stream_options and prep.req.stream_options.include_usage:
            yield sse({"id": rid, "object": "text_completion", "created": created, "model": model_name,
                        "choices": [], "usage": _usage(prep, result)})
        yield sse("[DONE]")
    except Exception as exc:  # a failing engine ends this stream, not the server
        log.exception("engine failed during a streamed completion")
        yield sse(error_body(f"engine error: {exc}", "server_error", None, "engine_error"))
        yield sse("[DONE]")
    finally:
        await aclose_quietly(events)
        release()


def _parse_request(raw: bytes) -> CompletionRequest:
    """The body as a validated request; RequestError naming the field otherwise."""
    payload = parse_json_object(raw)
    if "prompt" not in payload:
        raise RequestError("missing field 'prompt' (a list of token ids, or a string)", param="prompt")
    try:
        return CompletionRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p[:1].isupper()))
        raise RequestError(f"invalid field {param!r}: {first['msg']}", param=param) from None


def _parse_and_prepare(engine: Engine, model_name: str, raw: bytes) -> _Prepared:
    """Everything between the raw body and the engine call (run in a worker thread: a string
    prompt is tokenized here, and a long id list takes a while to check)."""
    return _prepare(engine, model_name, _parse_request(raw))


def add_completion_routes(app: FastAPI, engine: Engine, gate: AdmissionGate, model_name: str) -> None:
    """Register `POST /v1/completions` over `engine`, sharing the chat route's admission gate."""

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse | StreamingResponse:
        raw = await request.body()
        try:
            prep = await run_in_threadpool(_parse_and_prepare, engine, model_name, raw)
        except RequestError as exc:
            return error_response(exc.status, exc.message, type_="not_found_error" if exc.status == 404 else exc.type,
                        param=exc.param, code=exc.code)
        req = prep.req
        texts = _Texts(engine.tokenizer, prep)
        rid = f"cmpl-{uuid.uuid4().hex}"
        await gate.enter()  # waits while a weight update drains the engine
        if not req.stream:
            try:
                result = await engine.generate(prep.prompt_ids, prep.params)
            except Exception as exc:  # noqa: BLE001 — engine failures become 4xx/5xx, never a crash
                return engine_failure(exc, "prompt")
            finally:
                gate.exit()
            if result.finish_reason in ("error", "abort"):
                return error_response(500, f"the engine ended the completion with {result.finish_reason!r}",
                            type_="server_error", code="engine_error")
            return JSONResponse(_response(model_name, texts, result, rid),
                                headers={VERSION_HEADER: str(result.policy_version)})
        version = engine.policy_version  # fixed for the request: updates wait for it to drain
        release = gate.releaser()
        try:  # the first event before answering, so errors raised up front get a real status code
            events = aiter(engine.stream(prep.prompt_ids, prep.params))
            first_event = await anext(events)
        except StopAsyncIteration:
            release()
            return error_response(500, "engine stream ended without a result", type_="server_error", code="engine_error")
        except Exception as exc:  # noqa: BLE001 — as above
            release()
            return engine_failure(exc, "prompt")
        return StreamingResponse(
            _stream_chunks(model_name, texts, events, first_event, rid, release), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", VERSION_HEADER: str(version)},
            background=BackgroundTask(release))


__all__ = ["CompletionRequest", "add_completion_routes"]
