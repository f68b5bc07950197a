"""A deterministic fake engine for tests and examples (mini-swe-agent ships one too).

It replies with scripted completion texts, encoded with the real tokenizer, so everything above
the engine (agent loop, server, gateway) is exercised with real token ids and no model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from forgerl.engine.base import GenerationResult, SamplingParams, TokenEvent
from forgerl.errors import ContextLengthError, EngineError

Reply = str | Callable[[str], str]


class ScriptedEngine:
    """Replies with `replies` in order (a string, or a function of the decoded prompt).

    Each reply is encoded with the tokenizer; a reply longer than `max_tokens` is cut and reported
    as finish_reason "length", like a real engine. Logprobs are a fixed `logprob` per token.
    After the script runs out it raises EngineError (or repeats the last reply if `cycle`).
    """

    def __init__(
        self,
        tokenizer: Any,
        replies: Sequence[Reply],
        *,
        model_name: str = "scripted",
        max_context: int = 8192,
        logprob: float = -0.5,
        cycle: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_context = max_context
        self.policy_version = 0
        self._replies = list(replies)
        self._next = 0
        self._logprob = logprob
        self._cycle = cycle
        self._delay_s = delay_s
        self.prompts: list[list[int]] = []  # every prompt received, for assertions in tests

    def _reply_text(self, prompt_ids: list[int]) -> str:
        if self._next >= len(self._replies):
            if not (self._cycle and self._replies):
                raise EngineError(f"scripted engine ran out of replies after {len(self._replies)} calls")
            reply = self._replies[-1]
        else:
            reply = self._replies[self._next]
        self._next += 1
        if callable(reply):
            return reply(self.tokenizer.decode(prompt_ids, skip_special_tokens=False))
        return reply

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
    ) -> GenerationResult:
        result: GenerationResult | None = None
        async for event in self.stream(prompt_ids, params, session_id):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
    ) -> AsyncIterator[TokenEvent | GenerationResult]:
        params.validate()
        if len(prompt_ids) >= self.max_context:
            raise ContextLengthError(
                f"prompt has {len(prompt_ids)} tokens; the model's context is {self.max_context}"
            )
        self.prompts.append(list(prompt_ids))
        ids = self.tokenizer.encode(self._reply_text(prompt_ids), add_special_tokens=False)
        finish = "stop"
        limit = min(params.max_tokens, self.max_context - len(prompt_ids))
        if len(ids) > limit:
            ids, finish = ids[:limit], "length"
        for tok in ids:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            yield TokenEvent(tok, self._logprob)
        yield GenerationResult(
            completion_ids=ids,
            logprobs=[self._logprob] * len(ids),
            finish_reason=finish,
            policy_version=self.policy_version,
            prompt_tokens=len(prompt_ids),
        )

    def update_weights(self, state_dict: Mapping[str, Any], version: int) -> None:
        self.policy_version = version

    async def aclose(self) -> None:
        return None
