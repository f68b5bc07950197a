"""What a probe needs from a policy: greedy replies, and the argmax next token at every position.

`EngineReader` is the real thing: greedy generation through the built-in engine (the path every
rollout takes: continuous batching, exact greedy, stop on the format's end-of-message marker), and
one plain forward pass of the same weights for the teacher-forced argmaxes. The fakes in
tests/probes/fakes.py implement the same two methods, so an oracle and a broken model are scored by
exactly the code that scores a real policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from forgerl.engine.base import SamplingParams


class Reader(Protocol):
    tokenizer: Any

    def complete(self, prompts: Sequence[list[int]], max_tokens: int) -> list[list[int]]:
        """The greedy completion ids of each prompt (end-of-message marker included when reached)."""
        ...

    def argmax_next(self, ids: list[int]) -> list[int]:
        """out[t] = the most likely token after ids[:t + 1] (one forward pass, teacher-forced)."""
        ...


class EngineReader:
    """A policy behind the built-in engine (`forgerl.engine.load_engine`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer

    def complete(self, prompts: Sequence[list[int]], max_tokens: int) -> list[list[int]]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

        async def run() -> list[list[int]]:
            results = await asyncio.gather(*(self.engine.generate(list(p), params) for p in prompts))
            return [r.completion_ids for r in results]

        return asyncio.run(run())

    def argmax_next(self, ids: list[int]) -> list[int]:
        import torch

        with torch.inference_mode():
            logits = self.engine.model(torch.tensor([ids], device=self.engine.device)).logits[0]
        return logits.argmax(-1).tolist()
