"""The engine protocol: token ids in, token ids + logprobs + policy version out.

Everything above the engine (agent loop, server, gateway, trainer) talks to this protocol only,
so the built-in engine, a scripted fake and a vLLM adapter are interchangeable.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from forgerl.errors import ConfigError, EngineError
from forgerl.types import FinishReason, Timings

MIN_TEMPERATURE = 1e-3
"""Smallest non-zero sampling temperature: logits / 1e-320 overflow to inf and sampling returns garbage."""

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class EngineDown(EngineError):
    """The engine failed while it held the request (connection lost, timed out, answered 5xx): the
    engine itself is in trouble, unlike a refused request (a 4xx, a prompt too long), which is an
    EngineError only. The router (engine/router.py) takes such an engine out of the rotation."""


class EngineUnreachable(EngineDown):
    """The engine never received the request (connection refused: it is down), so sending it to
    another engine cannot duplicate a sample (engine/router.py does)."""


@dataclass
class SamplingParams:
    """Sampling settings. M2 samples at temperature 1.0, top-p 0.95, top-k 40 (M2_NOTES §6).

    The logprob returned for each sampled token is the raw model's log-softmax (no temperature, no
    top-p/top-k truncation): that is the probability the trainer recomputes for the CISPO ratio, so
    the two sides compare like with like. At temperature 1 without truncation it is also exactly the
    sampling probability.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None

    def validate(self) -> SamplingParams:
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if 0 < self.temperature < MIN_TEMPERATURE:
            raise ConfigError(f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}, got {self.temperature}: "
                              "dividing logits by a tinier one overflows")
        if not 0 < self.top_p <= 1:  # also false for NaN
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        return self


@dataclass
class GenerationResult:
    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    policy_version: int
    prompt_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV was reused instead of recomputed
    stop_reason: str | int | None = None  # the stop string or token id that ended generation
    timings: Timings = field(default_factory=Timings)


@dataclass
class TokenEvent:
    """One sampled token, streamed as it is produced."""

    token_id: int
    logprob: float


@runtime_checkable
class Engine(Protocol):
    model_name: str
    tokenizer: PreTrainedTokenizerBase
    max_context: int
    policy_version: int

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
    ) -> GenerationResult: ...

    def stream(
        self, prompt_ids: list[int], params: SamplingParams, session_id: str | None = None
    ) -> AsyncIterator[TokenEvent | GenerationResult]:
        """Yields TokenEvents as tokens are sampled, then the final GenerationResult."""
        ...

    def update_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None: ...

    async def aclose(self) -> None: ...


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids two sequences share: the KV an engine (or the router's guess of
    one) can reuse for a prompt. Called per slot and per recent prompt on every request, over
    contexts of thousands of tokens: equal blocks are skipped by slice comparison (in C), then the
    last block is walked token by token."""
    n = min(len(a), len(b))
    i = 0
    if type(a) is type(b):  # a list slice never equals a tuple slice: mixed types walk token by token
        while i + _PREFIX_BLOCK <= n and a[i:i + _PREFIX_BLOCK] == b[i:i + _PREFIX_BLOCK]:
            i += _PREFIX_BLOCK
    while i < n and a[i] == b[i]:
        i += 1
    return i


_PREFIX_BLOCK = 256


async def final_result(events: AsyncIterator[TokenEvent | GenerationResult]) -> GenerationResult:
    """The `GenerationResult` that ends an engine's event stream (what `generate` returns)."""
    result = None
    async for event in events:
        if isinstance(event, GenerationResult):
            result = event
    if result is None:
        raise RuntimeError("the engine's stream ended without a GenerationResult")
    return result


GROUP_SEPARATOR = "/"
"""Between a group key and a trajectory id in a session id (`session_key`)."""


def session_key(trajectory_id: str, group_id: str | None) -> str:
    """The session id of a trajectory's engine calls: `GROUP/TRAJECTORY` when it belongs to a group.

    Why in the session id: the router (engine/router.py) sends the G rollouts of a group to one
    engine so their shared prompt is computed once, and the session id is the one routing key the
    Engine protocol already carries; every other engine treats it as an opaque string."""
    return trajectory_id if not group_id else f"{group_id}{GROUP_SEPARATOR}{trajectory_id}"


def group_of(session_id: str | None) -> str | None:
    """The group key inside a `session_key` (None for a session without a group)."""
    if not session_id or GROUP_SEPARATOR not in session_id:
        return None
    return session_id.rsplit(GROUP_SEPARATOR, 1)[0]


def engine_info(engine: Engine) -> dict[str, Any]:
    return {"model": engine.model_name, "max_context": engine.max_context, "policy_version": engine.policy_version}
