"""Context management: the hook that lets an agent rewrite its own history.

In Forge a white-box agent may register a context-management function (M2_NOTES §4). A rewrite
breaks the append-only chain of token ids (DESIGN.md contract 2): the loop then renders the
rewritten messages fresh and the next call starts a new root, which the prefix-tree merge handles.
Without a rewrite every prompt extends the previous call's prompt + completion exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from forgerl.types import Message


@runtime_checkable
class ContextManager(Protocol):
    def maybe_rewrite(self, messages: Sequence[Message], prompt_len: int) -> list[Message] | None:
        """Called before each LLM call with the current context and the next prompt's length in
        tokens; returns the rewritten context, or None to keep the history (and the chain)."""
        ...


class DropOldToolOutputs:
    """Once the prompt passes `max_prompt_tokens`, replace the text of all tool results but the
    last `keep_last` with a short placeholder. Tool outputs are usually the bulk of an agent's
    context and the oldest ones the least useful; the calls themselves stay, so the model still
    sees what it did."""

    def __init__(self, max_prompt_tokens: int, keep_last: int = 1, placeholder: str = "[old tool output removed]"):
        if max_prompt_tokens < 1 or keep_last < 0:
            raise ValueError("max_prompt_tokens must be >= 1 and keep_last >= 0")
        self.max_prompt_tokens = max_prompt_tokens
        self.keep_last = keep_last
        self.placeholder = placeholder

    def maybe_rewrite(self, messages: Sequence[Message], prompt_len: int) -> list[Message] | None:
        if prompt_len <= self.max_prompt_tokens:
            return None
        tool_positions = [i for i, m in enumerate(messages) if m.role == "tool"]
        old = tool_positions[: max(len(tool_positions) - self.keep_last, 0)]
        old = [i for i in old if messages[i].content != self.placeholder]
        if not old:
            return None  # nothing left to drop: keep the chain
        rewritten = list(messages)
        for i in old:
            rewritten[i] = messages[i].model_copy(update={"content": self.placeholder})
        return rewritten
