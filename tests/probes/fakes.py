"""Fake policies for the probes' own tests: an oracle that must score 1.0 and a constant model
that must score about 0, both through the real probe code (they implement probes/reader.py's
`Reader`, nothing more)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from forgerl.chat import ChatFormat
from forgerl.types import Message


def reply_ids(tokenizer: Any, fmt: ChatFormat, reply: str) -> list[int]:
    """The ids a model samples to say `reply` in `fmt` with no reasoning (M2, whose prompt opened a
    think block, still closes it first)."""
    body = fmt.render_assistant_body(Message(role="assistant", content=reply, reasoning=None))
    return tokenizer.encode(body, add_special_tokens=False)


class AnswerKeyReader:
    """Answers every question right: `key` maps each user message to its answer; a prompt is
    answered with the key whose message it contains (the longest, should several). Its
    teacher-forced argmax is the next correct token."""

    def __init__(self, tokenizer: Any, fmt: ChatFormat, key: Mapping[str, str]) -> None:
        self.tokenizer, self.fmt, self.key = tokenizer, fmt, dict(key)

    def complete(self, prompts: Sequence[list[int]], max_tokens: int) -> list[list[int]]:
        out = []
        for ids in prompts:
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            found = sorted((q for q in self.key if q in text), key=len)
            if not found:
                raise KeyError(f"no answer-key question in the prompt {text[-120:]!r}")
            out.append(reply_ids(self.tokenizer, self.fmt, self.key[found[-1]])[:max_tokens])
        return out

    def argmax_next(self, ids: list[int]) -> list[int]:
        return [*ids[1:], ids[-1]]


class ConstantReader:
    """Says `reply` to everything and predicts its first token everywhere."""

    def __init__(self, tokenizer: Any, fmt: ChatFormat, reply: str = "0") -> None:
        self.tokenizer, self.fmt, self.reply = tokenizer, fmt, reply
        self._token = tokenizer.encode(reply, add_special_tokens=False)[0]

    def complete(self, prompts: Sequence[list[int]], max_tokens: int) -> list[list[int]]:
        return [reply_ids(self.tokenizer, self.fmt, self.reply)[:max_tokens] for _ in prompts]

    def argmax_next(self, ids: list[int]) -> list[int]:
        return [self._token] * len(ids)
