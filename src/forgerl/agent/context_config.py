"""`[context]`: how rollouts manage their context — not at all, a fixed function the harness
applies, or context actions the policy takes (agent/context.py). `[eval.context]` may differ, which
is how a context manager applied at inference only is compared with one trained with."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forgerl.agent.context import ContextActions, ContextManager, FixedContext, context_function, context_tools


class ContextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    manager: Literal["none", "fixed", "actions"] = "none"
    """`none`: the history only grows (an episode whose context overflows is truncated); `fixed`: the
    harness applies `function` past `trigger_tokens`; `actions`: the policy may call the `actions`
    functions as tools (`context_<name>`), trained by the same loss as every other action."""
    function: str = "drop_old_rounds"
    """fixed (and the actions' fallback): the registered function the harness applies (agent/context.py:
    drop_old_rounds, drop_tool_outputs, keep_last_turns, or one you registered)."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """fixed: the function's keyword arguments."""
    trigger_tokens: int = Field(1536, ge=1)
    """fixed: apply once the next prompt is longer than this many tokens."""
    actions: list[str] = Field(default_factory=lambda: ["drop_tool_outputs"])
    """actions: the functions offered to the policy (each tool's description costs prompt tokens: about
    130 for drop_tool_outputs with the default tokenizer; add keep_last_turns, summarize, drop_old_rounds)."""
    fallback: bool = False
    """actions: also apply the fixed function when the policy has not acted and the prompt is past the trigger."""

    @model_validator(mode="after")
    def _known_functions(self) -> ContextConfig:
        function = context_function(self.function)  # ConfigError names the registered ones
        try:
            inspect.signature(function).bind([], **self.arguments)
        except TypeError as exc:
            raise ValueError(f"[context] arguments {self.arguments} do not fit {self.function}{inspect.signature(function)}: {exc}") from None
        if self.manager == "actions":
            context_tools(self.actions)
        return self

    def build(self) -> ContextManager | None:
        """A fresh manager for one episode (managers hold per-episode state)."""
        if self.manager == "none":
            return None
        fixed = FixedContext(self.function, self.trigger_tokens, **self.arguments)
        if self.manager == "fixed":
            return fixed
        return ContextActions(self.actions, fallback=fixed if self.fallback else None)
